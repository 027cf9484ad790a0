"""Packaging for effrep-hpc: the `effrep_hpc` package; the torch-free `analysis` package is its own distribution.

`analysis/pyproject.toml` defines `effrep-analysis` (numpy, h5py, matplotlib; vtk and pyvista as `[viz]`), which
a workstation installs without torch: `pip install ./analysis`. This distribution requires it from the same
checkout (a local path requirement) instead of packaging `analysis` a second time, so installing both into one
environment never leaves two distributions owning the same files.
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
version = {}
exec((ROOT / "effrep_hpc" / "__init__.py").read_text(), version)

# Built from this checkout: pip builds the `analysis` directory next to this file (a clone, or the copy pip
# makes of a git URL), never a released effrep-analysis that might not match this version of effrep_hpc.
ANALYSIS = ROOT / "analysis"
analysis_version = re.search(r'^version = "([^"]+)"', (ANALYSIS / "pyproject.toml").read_text(), re.M)
if analysis_version is None or analysis_version.group(1) != version["__version__"]:
    raise SystemExit(
        f"analysis/pyproject.toml has version {analysis_version and analysis_version.group(1)}, "
        f"effrep_hpc/__init__.py {version['__version__']}: set both to the same version"
    )


def analysis_requirement(extra: str = "") -> str:
    """The PEP 508 requirement for effrep-analysis (with an optional extra) from this checkout."""
    return f"effrep-analysis{f'[{extra}]' if extra else ''} @ {ANALYSIS.as_uri()}"


extras = {
    "mpi": ["mpi4py>=3.1", "mpich"],
    "viz": [analysis_requirement("viz")],  # vtk and pyvista, listed once in analysis/pyproject.toml
    "slurm": ["submitit>=1.5"],
    "test": ["pytest>=7", "pytest-timeout", "ruff", "mypy", "types-PyYAML"],  # `make test` and `make lint`
}
extras["all"] = sorted({dep for deps in extras.values() for dep in deps})

setup(
    name="effrep-hpc",
    version=version["__version__"],
    description="Filter pruning, quantized training and loss landscapes on HPC clusters",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["effrep_hpc", "effrep_hpc.*"]),
    package_data={"effrep_hpc": ["py.typed"]},  # PEP 561: the package's annotations are for its users too
    install_requires=[
        # A range, not a pin: clusters keep their own CUDA build of torch.
        "torch>=2.1,<3",
        analysis_requirement(),  # `effrep analyze` and the figures of `effrep quant markov --plot`
        "numpy>=1.24",
        "h5py>=3.8",
        "pyyaml>=6",
        "scikit-learn>=1.2",
        "scipy>=1.9",
        "mnist1d>=0.0.2",
        "pillow>=8",  # ImageNet-format folders
        "tqdm>=4.60",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["effrep=effrep_hpc.cli:main"]},
)
