"""Torch-free analysis of effrep-hpc results: surface files to contour plots, 3D figures and VTK.

Import cost is kept low (numpy and h5py only here); each command module pulls in matplotlib or
vtk when it is imported, and pyvista only when a render runs. Run `python -m analysis --help`.
"""

from __future__ import annotations

from analysis.surface import Surface, SurfaceError, load_surface

__all__ = ["Surface", "SurfaceError", "load_surface"]
