"""Packaging for effrep-hpc: the `effrep_hpc` package and the torch-free `analysis` package."""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "effrep_hpc" / "__init__.py").read_text(), version)

extras = {
    "mpi": ["mpi4py>=3.1", "mpich"],
    "viz": ["vtk>=9.2", "pyvista>=0.42"],
    "slurm": ["submitit>=1.5"],
    "test": ["pytest>=7", "pytest-timeout", "ruff", "mypy", "types-PyYAML"],  # `make test` and `make lint`
}
extras["all"] = sorted({dep for deps in extras.values() for dep in deps})

setup(
    name="effrep-hpc",
    version=version["__version__"],
    description="Filter pruning, quantized training and loss landscapes on HPC clusters",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["effrep_hpc", "effrep_hpc.*", "analysis", "analysis.*"]),
    package_data={"effrep_hpc": ["py.typed"]},  # PEP 561: the package's annotations are for its users too
    install_requires=[
        # A range, not a pin: clusters keep their own CUDA build of torch.
        "torch>=2.1,<3",
        "numpy>=1.24",
        "h5py>=3.8",
        "pyyaml>=6",
        "scikit-learn>=1.2",
        "scipy>=1.9",
        "mnist1d>=0.0.2",
        "matplotlib>=3.7",
        "pillow>=8",  # ImageNet-format folders
        "tqdm>=4.60",
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["effrep=effrep_hpc.cli:main"]},
)
