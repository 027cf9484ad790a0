"""Subcommand groups of the `effrep` CLI that live outside cli.py.

Each module here exposes ``add_commands(sub)`` that adds its subparsers to the `effrep` parser
(``sub`` is the object returned by ``add_subparsers``) and sets ``func`` on each. Modules must import
torch and the heavy parts of the package lazily, inside the command functions, so `effrep --help`
stays fast.
"""

MODULES = ("effrep_hpc.commands.prune", "effrep_hpc.commands.quant", "effrep_hpc.commands.launch")
