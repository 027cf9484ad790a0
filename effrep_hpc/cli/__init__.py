"""The `effrep` command line: one subcommand per registered experiment, plus tools; configs are YAML plus key=value.

Experiments come from :mod:`effrep_hpc.experiments` (:mod:`.experiments` builds their subcommands), tools
from :mod:`.tools` (models, prune flops/layers/presets, quant markov/export) and :mod:`.cluster` (submit,
status, merge). Torch and the runners load inside the command functions, so `effrep --help` stays fast.

Exit codes: 0 success, 2 a config or input problem (nothing was created or overwritten), 1 a failure
while running. Under MPI an error on one rank aborts the whole job instead of leaving the others hung.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from effrep_hpc.errors import UserError

EPILOG_CONFIG = """\
CONFIG is a YAML file (see configs/); each following key=value overrides one entry, e.g.
  train.lr=0.05 data.name=mnist1d model.name=mnist1d_net run.out=runs/m1d
An unknown key or a bad value stops with exit code 2 before anything is written."""

# Descriptions of the command groups whose subcommands come from experiments and tools.
GROUPS = {
    "prune": (
        "Filter pruning: sensitivity scans, presets, prune-and-retrain, FLOPs.",
        "Filter pruning after Li et al., 'Pruning Filters for Efficient ConvNets' (ICLR 2017): filters are\n"
        "ranked (by L1 norm by default), physically removed together with their BN channels and the next\n"
        "layer's input kernels, and the result is a plain smaller model saved as arch + state_dict.\n\n"
        "Typical session:\n"
        "  effrep train configs/demo/prune_digits.yaml\n"
        "  mpiexec -n 2 python -m mpi4py -m effrep_hpc.cli prune sensitivity configs/demo/prune_digits.yaml\n"
        "  python -m analysis sensitivity runs/prune_digits/sensitivity.h5\n"
        "  effrep prune retrain configs/demo/prune_digits.yaml\n"
        "  effrep prune flops --model resnet56 --preset resnet56-b --json",
    ),
    "quant": (
        "Quantized training: BC / SR / R (+Adam), sweeps, Markov-chain analysis, export.",
        'Quantized training after Li et al., "Training Quantized Nets: A Deeper Understanding" (NeurIPS 2017):\n'
        "FP, BC (BinaryConnect: float copy w_r, forward/backward at Q(w_r)), SR (stochastic rounding, weights\n"
        "always on the grid, no float copy) and R (deterministic rounding), each with an SGD (fp, bc, sr, r) or\n"
        "Adam (fp-adam, bc-adam, sr-adam, r-adam) step; k-bit fixed-point grids with a per-layer resolution.",
    ),
}


class FlexibleParser(argparse.ArgumentParser):
    """Takes options anywhere, e.g. ``--overwrite`` after the key=value overrides (argparse's intermixed parsing).

    Parsers that hold subcommands or a REMAINDER argument cannot be parsed intermixed; they parse as usual.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Parse positionals and options in any order where argparse allows it."""
        plain = any(a.nargs in (argparse.PARSER, argparse.REMAINDER) for a in self._actions)
        if plain or self._intermixing:  # parse_known_intermixed_args calls back into this method
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def split_config_args(args: list[str]) -> tuple[Optional[str], list[str]]:
    """The config file (first argument unless it looks like key=value) and the overrides; UserError on stray words."""
    path, rest = (args[0], list(args[1:])) if args and "=" not in args[0] else (None, list(args))
    bad = [o for o in rest if "=" not in o]
    if bad:
        raise UserError(f"expected key=value overrides after the config file, got {bad}")
    return path, rest


def load_args(args: argparse.Namespace) -> Any:
    """The Config of a command's ``CONFIG [key=value ...]`` arguments."""
    from effrep_hpc.config import load_config

    return load_config(*split_config_args(args.config))


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from effrep_hpc import __version__
    from effrep_hpc.cli import cluster, experiments, tools

    parser = argparse.ArgumentParser(
        prog="effrep",
        description="Filter pruning, quantized training and loss landscapes, serial or on MPI/SLURM clusters.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `effrep COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"effrep-hpc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=FlexibleParser)
    groups: dict[str, Any] = {}

    def group(name: str) -> Any:
        """The subparsers of command group ``name`` (created on first use); a bare group prints its help."""
        if name not in groups:
            summary, description = GROUPS[name]
            top = sub.add_parser(
                name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
            )
            top.set_defaults(func=lambda _args, top=top: (top.print_help(), 2)[1])
            groups[name] = top.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", parser_class=FlexibleParser)
        return groups[name]

    experiments.add_commands(sub, group)
    tools.add_commands(sub, group)
    cluster.add_commands(sub)
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
