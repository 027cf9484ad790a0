"""The `effrep` command line: one subcommand per experiment; configs are YAML plus key=value overrides.

Exit codes: 0 success, 2 a config or input problem (nothing was created or overwritten), 1 a failure
while running. Under MPI an error on one rank aborts the whole job instead of leaving the others hung.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

EPILOG_CONFIG = """\
CONFIG is a YAML file (see configs/); each following key=value overrides one entry, e.g.
  train.lr=0.05 data.name=mnist1d model.name=mnist1d_net run.out=runs/m1d
An unknown key or a bad value stops with exit code 2 before anything is written."""


def config_keys_help(sections: tuple[str, ...]) -> str:
    """The keys of config ``sections`` with their defaults, for a subcommand's --help."""
    import dataclasses

    from effrep_hpc.config import Config

    root = Config()
    lines = ["config keys (section.key = default):"]
    for section in sections:
        obj = getattr(root, section)
        for f in dataclasses.fields(obj):
            lines.append(f"  {section}.{f.name} = {getattr(obj, f.name)!r}")
    return "\n".join(lines)


class UserError(Exception):
    """An error in what the user asked for: reported without a traceback, exit code 2."""


def _split_config_args(args: list[str]) -> tuple[Optional[str], list[str]]:
    """The first argument is the config file unless it looks like a key=value override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, list(args)


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns the project's Config
    from effrep_hpc.config import load_config

    path, overrides = _split_config_args(args.config)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise UserError(f"expected key=value overrides after the config file, got {bad}")
    return load_config(path, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model, resuming from run.out/checkpoint.pt when it exists."""
    from effrep_hpc.runners.train import print_outputs, run_train

    cfg = _load(args)
    print_outputs(run_train(cfg, overwrite=args.overwrite))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models with parameters and FLOPs at their default input size."""
    import torch

    from effrep_hpc.models import count_flops_params, create_model, list_models, model_spec

    unknown = [n for n in args.name if n not in list_models()]
    if unknown:
        model_spec(unknown[0])  # raises KeyError naming close names
    rows = []
    for name in list_models():
        spec = model_spec(name)
        if args.name and name not in args.name:
            continue
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            model = create_model(name)
        flops, params = count_flops_params(model, spec.input_shape)
        rows.append(
            {"name": name, "params": params, "flops": flops, "input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'model':<20} {'params':>12} {'FLOPs (MACs)':>14}  input")
        for r in rows:
            shape = "x".join(map(str, r["input_shape"]))
            print(f"{r['name']:<20} {r['params']:>12,} {r['flops']:>14,}  {shape}, {r['num_classes']} classes")
    return 0


def cmd_landscape(args: argparse.Namespace) -> int:
    """Scan the loss landscape around a checkpoint into a surface file."""
    from effrep_hpc.runners.landscape import run_landscape

    cfg = _load(args)
    run_landscape(cfg, overwrite=args.overwrite)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Assemble array-task shard files into one surface file."""
    from effrep_hpc.store.surface import merge_shards

    path, done, total = merge_shards([Path(s) for s in args.shards], Path(args.output), overwrite=args.overwrite)
    print(f"merged {len(args.shards)} shard(s): {done}/{total} points done")
    print(f"surface: {path}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """Hand over to the torch-free analysis package."""
    from analysis.cli import main as analysis_main

    return int(analysis_main(args.rest, prog="effrep analyze") or 0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="effrep",
        description="Filter pruning, quantized training and loss landscapes, serial or on MPI/SLURM clusters.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `effrep COMMAND --help` for the options of a command.",
    )
    from effrep_hpc import __version__

    parser.add_argument("--version", action="version", version=f"effrep-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, config: bool = True, sections: tuple[str, ...] = ()
    ) -> argparse.ArgumentParser:
        epilog = EPILOG_CONFIG + ("\n\n" + config_keys_help(sections) if sections else "") if config else None
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if config:
            p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]", help="YAML config file and overrides")
        p.set_defaults(func=func)
        return p

    p = add(
        "train", cmd_train, "Train a model; re-running the same command resumes after a kill.",
        sections=("data", "model", "train", "run"),
    )
    p.add_argument("--overwrite", action="store_true", help="delete the run's checkpoint, metrics and weights and start over")

    p = add("models", cmd_models, "List registered models with parameter counts and FLOPs.", config=False)
    p.add_argument("name", nargs="*", help="only these models")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    p = add(
        "landscape",
        cmd_landscape,
        "Scan a 1D/2D loss landscape around a checkpoint into an HDF5 surface file. Re-running resumes; "
        "under `mpiexec -n P python -m mpi4py -m effrep_hpc.cli landscape ...` the grid is shared by P ranks.",
        sections=("landscape", "data", "run"),
    )
    p.add_argument("--overwrite", action="store_true", help="start the surface file over instead of resuming it")

    p = add("merge", cmd_merge, "Merge the shard files of an array-task scan into one surface file.", config=False)
    p.add_argument("shards", nargs="+", help="shard files (surface.shard-I-of-N.h5)")
    p.add_argument("-o", "--output", required=True, help="the surface file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    import importlib

    from effrep_hpc.commands import MODULES

    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_commands(sub)

    p = sub.add_parser(
        "analyze",
        help="Figures and VTK from HDF5 files (same as `python -m analysis`).",
        description="Figures and VTK from HDF5 files; `effrep analyze --help` lists the analysis commands.",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="analysis command and its options, e.g. contour FILE")
    p.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `effrep` console script."""
    from effrep_hpc.config import ConfigError
    from effrep_hpc.store.h5 import FileBusyError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["analyze"]:
        # Everything after `analyze` belongs to the analysis package's own parser (its --help too).
        from analysis.cli import main as analysis_main

        return int(analysis_main(argv[1:], prog="effrep analyze") or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from effrep_hpc.dist.mpi import abort_job, abort_on_error

    # A bug (any exception not handled below) on one MPI rank ends the whole job, even without -m mpi4py.
    with abort_on_error():
        try:
            return int(args.func(args) or 0)
        except (ConfigError, UserError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            abort_job(2)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            abort_job(130)
            return 130
        except (ValueError, KeyError, FileNotFoundError, FileExistsError, FileBusyError) as exc:
            # Problems with the user's inputs or files; anything else is a bug and keeps its traceback.
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            code = 1 if isinstance(exc, FileBusyError) else 2
            abort_job(code)
            return code


if __name__ == "__main__":
    sys.exit(main())
