"""effrep-hpc: filter pruning, quantized training and loss landscapes on HPC clusters."""

__version__ = "0.1.0"
