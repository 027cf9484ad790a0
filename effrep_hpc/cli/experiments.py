"""One subcommand per registered experiment: ``CONFIG [key=value ...] [--overwrite] [flags]`` -> runner -> printed result."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from effrep_hpc.experiments import EXPERIMENTS, Experiment


def run_experiment(exp: Experiment, args: argparse.Namespace) -> int:
    """Load the config, run the experiment's runner, print what its ``show`` makes of the result."""
    from effrep_hpc.cli import load_args

    cfg = getattr(args, "loaded_config", None) or load_args(args)  # main loads it before the launch handshake
    flags = {f.dest: getattr(args, f.dest) for f in exp.flags}
    result = exp.load("runner")(cfg, overwrite=args.overwrite, **flags, **dict(exp.fixed))
    if exp.show is not None and result is not None:
        text = exp.load("show")(result, cfg)
        if text:
            print(text, flush=True)
    return 0


def add_commands(sub: Any, group: Callable[[str], Any]) -> None:
    """Add every registered experiment to the parser (under its group for two-word commands)."""
    from effrep_hpc.cli import EPILOG_CONFIG, config_keys_help, load_args

    for name in EXPERIMENTS:
        exp = EXPERIMENTS.get(name)
        parent = sub if len(exp.words) == 1 else group(exp.words[0])
        p = parent.add_parser(
            exp.words[-1], help=exp.summary, description=exp.description,
            epilog=EPILOG_CONFIG + "\n\n" + config_keys_help(exp.sections), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("config", nargs="*", metavar="CONFIG [key=value ...]", help="YAML config file and overrides")
        p.add_argument("--overwrite", action="store_true", help=exp.overwrite_help)
        for flag in exp.flags:
            p.add_argument(flag.name, action="store_true", help=flag.help)
        p.set_defaults(func=lambda args, exp=exp: run_experiment(exp, args), prepare=load_args)
