"""The `effrep` command line: one subcommand per registered experiment, plus tools; configs are YAML plus key=value.

Experiments come from :mod:`effrep_hpc.experiments` (:mod:`.experiments` builds their subcommands), tools
from :mod:`.tools` (models, prune flops/layers/presets, quant markov/export) and :mod:`.cluster` (submit,
status, merge). Torch and the runners load inside the command functions, so `effrep --help` stays fast.

:func:`main` is the one error boundary. Known failures (bad config or input, missing, foreign or
unwritable files, a full disk, a busy output, a missing device; see :func:`effrep_hpc.errors.describe`)
print one ``error: ...`` line and exit 2 (or the error's own ``exit_code``, e.g. 3 for a diverged run);
anything else is a bug and keeps its traceback (exit 1).

Under MPI no rank is left waiting: every rank first reports whether its arguments and config loaded
(one allgather over COMM_WORLD, before any backend exists), and runners do the same for their own
setup; a failure found so ends every rank cleanly with the same exit code, the message printed once
and no MPI_Abort. A failure on one rank later (in the middle of the work) aborts the whole job.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any, NoReturn, Optional

from effrep_hpc.errors import JobError, UserError, describe

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

    def error(self, message: str) -> NoReturn:
        """A usage error is a user error: one line through the CLI's boundary (printed once per job), exit 2."""
        raise UserError(f"{message} (see `{self.prog} --help`)")

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

    parser = FlexibleParser(
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


def prepare(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` and load the config of an experiment command (``args.loaded_config``); what each rank checks first."""
    args = parser.parse_args(argv)
    if getattr(args, "prepare", None) is not None:
        args.loaded_config = args.prepare(args)
    return args


def report(exc: JobError) -> None:
    """Print a job's failure on the rank that reports it: one line, or the traceback when it was a bug."""
    if not exc.print_here:
        return
    cause = exc.__cause__
    if cause is not None and not isinstance(cause, SystemExit) and describe(cause, user_errors()) is None:
        traceback.print_exception(type(cause), cause, cause.__traceback__)
    elif str(exc):
        print(f"error: {exc}", file=sys.stderr, flush=True)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types the user can fix besides :data:`effrep_hpc.errors.USER_FAILURES`."""
    from effrep_hpc.store.h5 import FileBusyError

    return (FileBusyError,)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `effrep` console script, and the one error boundary (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["analyze"]:
        # Everything after `analyze` belongs to the analysis package's own parser (its --help too).
        from analysis.cli import main as analysis_main

        return int(analysis_main(argv[1:], prog="effrep analyze") or 0)
    parser = build_parser()
    from effrep_hpc.dist.base import guarded
    from effrep_hpc.dist.mpi import abort_job, abort_on_error, finalize, launched_world, world_allgather, world_rank

    # MPI_Finalize (so that `python -m mpi4py` does not turn an exit code into MPI_Abort) only where every rank
    # ends alike: after a JobError, or in a process alone. Elsewhere a failing rank aborts the job.
    alone = launched_world() is None
    # A bug (any exception not handled below) on one MPI rank ends the whole job, even without -m mpi4py.
    with abort_on_error():
        try:
            with guarded(world_allgather, world_rank()):  # every rank's arguments and config, before any waiting
                args = prepare(parser, argv)
            if not getattr(args, "command", None):
                parser.print_help()
            code = int(args.func(args) or 0) if getattr(args, "command", None) else 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            abort_job(130)
            return 130
        except SystemExit:  # e.g. argparse's usage error in a process alone; it printed already
            if alone:
                finalize()
            raise
        except JobError as exc:  # raised on every rank together: end cleanly, report once
            report(exc)
            finalize()
            return exc.exit_code
        except Exception as exc:
            known = describe(exc, user_errors())
            if known is None:
                raise  # a bug: its traceback, and (under MPI) the end of the whole job
            print(f"error: {known[1]}", file=sys.stderr, flush=True)
            abort_job(known[0])  # only this rank knows: end the others (no-op without several MPI ranks)
            finalize()
            return known[0]
    if code and alone:
        finalize()
    return code


if __name__ == "__main__":
    sys.exit(main())
