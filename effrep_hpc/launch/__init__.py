"""Cluster launch: submitit executors from `launch:` configs, checkpointable tasks, job environments.

- :mod:`~effrep_hpc.launch.executor`: cluster presets (configs/clusters/) and SLURM/local executors.
- :mod:`~effrep_hpc.launch.env`: :class:`JobEnv`, "my rank, my task id, my job id", and torch.distributed variables.
- :mod:`~effrep_hpc.launch.tasks`: checkpointable tasks that run an `effrep` command and requeue on USR2.
- :mod:`~effrep_hpc.launch.submit`: plans (training job, landscape array + afterok merge, sweep arrays).
- :mod:`~effrep_hpc.launch.status`: progress read from the HDF5 outputs.

submitit and h5py are imported by the submodules, not here, so importing the package stays cheap.
"""

from effrep_hpc.launch.env import JobEnv, current_env

__all__ = ["JobEnv", "current_env"]
