"""submitit executors from a `launch:` config: cluster presets, sbatch parameters, SLURM or local.

All sbatch specifics live here: which launch key becomes which #SBATCH line, that every job is
requeueable (``--requeue``) and gets USR2 before its time limit (``--signal``), and that a job waiting
on a failed one is cancelled instead of pending forever (``--kill-on-invalid-dep``).
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from effrep_hpc.config import Config, ConfigError, LaunchConfig, from_dict, merge_overrides, yaml_load
from effrep_hpc.registry import did_you_mean

PRESET_DIR = Path("configs") / "clusters"


def preset_dirs() -> list[Path]:
    """Where cluster presets are looked up: ./configs/clusters, then the one next to the package."""
    here = Path.cwd() / PRESET_DIR
    package = Path(__file__).resolve().parents[2] / PRESET_DIR
    return [here] if here.resolve() == package.resolve() else [here, package]


def preset_names() -> list[str]:
    """Names of the presets found in :func:`preset_dirs`."""
    names = {p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_preset(name: str) -> Path:
    """The preset file ``name`` names: a path to a YAML file, or a name in configs/clusters/."""
    candidate = Path(name).expanduser()
    if candidate.suffix in (".yaml", ".yml") or "/" in name:
        if not candidate.is_file():
            raise ConfigError([f"launch.cluster: preset file {name!r} does not exist"])
        return candidate
    for folder in preset_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    names = preset_names()
    hint = did_you_mean(name, names)
    raise ConfigError(
        [f"launch.cluster: unknown cluster preset {name!r}{hint} (valid: {', '.join(names) or 'none found'}; "
         f"presets are YAML files in {PRESET_DIR}/)"]
    )


def load_preset(name: str) -> dict[str, Any]:
    """The launch settings of preset ``name``, checked against LaunchConfig (typos name the closest key)."""
    path = find_preset(name)
    data = yaml_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: a cluster preset is a mapping of launch keys (got {type(data).__name__})"])
    try:
        from_dict(data, LaunchConfig)
    except ConfigError as exc:
        raise ConfigError([f"cluster preset {path}: {p.replace('launch.', '', 1)}" for p in exc.problems]) from None
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_submit_config(path: Optional[str], overrides: list[str], cluster: Optional[str] = None) -> Config:
    """The config of a submission: preset (``cluster`` or launch.cluster) < the file's launch: section < overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r} does not exist"])
        loaded = yaml_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{p}: the top level must be a mapping of sections"])
        data = loaded
    data = merge_overrides(data, overrides)
    launch = data["launch"] if isinstance(data.get("launch"), dict) else {}
    name = cluster or launch.get("cluster")
    if name:
        preset = load_preset(str(name))
        data = _deep_merge({"launch": preset}, data)
        data["launch"]["cluster"] = str(name)
    return from_dict(data)


def slurm_available() -> bool:
    """True when sbatch is on PATH (we can submit to a SLURM controller from here)."""
    return shutil.which("sbatch") is not None


def resolve_executor(launch: LaunchConfig, local: bool = False) -> str:
    """'slurm' or 'local': --local wins, then launch.executor; 'auto' picks SLURM when sbatch exists."""
    if local:
        return "local"
    if launch.executor == "auto":
        return "slurm" if slurm_available() else "local"
    if launch.executor == "slurm" and not slurm_available():
        raise ValueError(
            "launch.executor=slurm but sbatch is not on PATH; run on a login node of the cluster, start the "
            "local one (slurm/local-cluster.sh start), or use --local to run through submitit's local executor"
        )
    return launch.executor


@dataclass(frozen=True)
class JobShape:
    """What one submission asks for besides the launch defaults: name, size, time and dependency."""

    name: str
    nodes: int = 1
    tasks_per_node: int = 1
    time: Optional[int] = None  # minutes; default launch.time
    dependency: Optional[str] = None  # e.g. "afterok:1234"
    array_parallelism: Optional[int] = None


def slurm_parameters(launch: LaunchConfig, shape: JobShape) -> dict[str, Any]:
    """Keyword arguments for submitit's SlurmExecutor.update_parameters (names of its sbatch template)."""
    params: dict[str, Any] = {
        "job_name": shape.name,
        "time": shape.time or launch.time,
        "nodes": shape.nodes,
        "ntasks_per_node": shape.tasks_per_node,
        "signal_delay_s": launch.signal_delay_s,
        "stderr_to_stdout": False,
    }
    optional = {
        "partition": launch.partition,
        "account": launch.account,
        "qos": launch.qos,
        "constraint": launch.constraint,
        "cpus_per_task": launch.cpus_per_task,
        "gpus_per_task": launch.gpus_per_task or None,
        "dependency": shape.dependency,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if launch.mem_gb is not None:
        gb = launch.mem_gb
        params["mem"] = f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"
    parallel = shape.array_parallelism if shape.array_parallelism is not None else launch.array_parallelism
    if parallel:
        params["array_parallelism"] = parallel
    if launch.setup:
        params["setup"] = list(launch.setup)
    if launch.srun_args:
        params["srun_args"] = list(launch.srun_args)
    # requeue: allowed even where the site's default is JobRequeue=0; a job whose dependency failed
    # is cancelled rather than left pending forever.
    extra: dict[str, Any] = {"requeue": True}
    if shape.dependency:
        extra["kill-on-invalid-dep"] = "yes"
    extra.update({str(k).replace("_", "-"): v for k, v in launch.sbatch.items()})
    params["additional_parameters"] = extra
    return params


def local_parameters(launch: LaunchConfig, shape: JobShape) -> dict[str, Any]:
    """Keyword arguments for submitit's LocalExecutor: one node, the same time limit and signal delay."""
    params: dict[str, Any] = {
        "timeout_min": shape.time or launch.time,
        "tasks_per_node": shape.nodes * shape.tasks_per_node,
        "signal_delay_s": launch.signal_delay_s,
    }
    if launch.gpus_per_task:
        params["gpus_per_node"] = launch.gpus_per_task * shape.tasks_per_node
    if launch.setup:
        params["setup"] = list(launch.setup)
    return params


def make_executor(launch: LaunchConfig, folder: str | Path, shape: JobShape, *, kind: str) -> Any:
    """A submitit executor of ``kind`` ('slurm' or 'local') writing logs under ``folder``, set up for ``shape``."""
    import submitit

    folder = Path(folder) / "%j"
    python = launch.python
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=launch.max_requeues, python=python)
        executor.update_parameters(**slurm_parameters(launch, shape))
        return executor
    if kind == "local":
        if shape.nodes > 1:
            raise ValueError(
                f"the local executor runs on this machine only, but {shape.name} asks for {shape.nodes} nodes; "
                "set launch.nodes=1 (launch.tasks_per_node processes still run)"
            )
        local = submitit.LocalExecutor(folder=folder, max_num_timeout=launch.max_requeues, python=python)
        local.update_parameters(**local_parameters(launch, shape))
        return local
    raise ValueError(f"unknown executor kind {kind!r} (valid: slurm, local)")


def describe_parameters(params: dict[str, Any], array: int = 0) -> list[str]:
    """The #SBATCH options a SlurmExecutor parameter dict stands for (what --dry-run prints)."""
    flat = dict(params)
    extra = flat.pop("additional_parameters", {}) or {}
    setup = flat.pop("setup", None)
    srun = flat.pop("srun_args", None)
    flat.pop("stderr_to_stdout", None)
    parallel = flat.pop("array_parallelism", None)
    if "signal_delay_s" in flat:
        flat["signal"] = f"USR2@{flat.pop('signal_delay_s')}"
    if "timeout_min" in flat:  # local executor
        flat["time"] = flat.pop("timeout_min")
    if array > 1:
        flat["array"] = f"0-{array - 1}" + (f"%{min(array, parallel)}" if parallel else "")
    lines = []
    for key, value in sorted({**flat, **extra}.items()):
        flag = key.replace("_", "-")
        lines.append(f"#SBATCH --{flag}" if value is True else f"#SBATCH --{flag}={shlex.quote(str(value))}")
    if setup:
        lines += [f"# setup: {line}" for line in setup]
    if srun:
        lines.append("# srun " + " ".join(shlex.quote(a) for a in srun))
    return lines
