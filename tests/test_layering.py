"""The layer table of the README (imports point downward only), read from the source with ``ast``.

Nothing is imported: every ``import`` and ``from ... import`` statement of every module under
``effrep_hpc/`` and ``analysis/`` counts, including the lazy ones inside functions, because a lazy
import is still a dependency (it only moves the failure to run time). That ``import analysis`` leaves
torch out of ``sys.modules`` at run time is tested in tests/analysis/test_analysis_cli.py.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("effrep_hpc", "analysis")

MATH = ("effrep_hpc.landscape", "effrep_hpc.prune", "effrep_hpc.quant", "effrep_hpc.train")
# the CLI, the cluster launcher and the experiment registry (which names runners) sit above everything below
ENTRY_POINTS = ("effrep_hpc.cli", "effrep_hpc.commands", "effrep_hpc.launch", "effrep_hpc.experiments")


@dataclass(frozen=True)
class Rule:
    """Modules under any of ``where`` (minus ``except_in``) must not import anything under ``forbidden``."""

    name: str
    where: tuple[str, ...]
    forbidden: tuple[str, ...]
    except_in: tuple[str, ...] = ()


RULES = (
    Rule(
        "the math layer (landscape, prune, quant, train) knows no files, comm, configs or entry points",
        MATH,
        ("effrep_hpc.dist", "effrep_hpc.store", "effrep_hpc.config", "effrep_hpc.runners", *ENTRY_POINTS, "mpi4py", "h5py"),
    ),
    Rule(
        "dist/ knows nothing about neural nets, stores or experiments",
        ("effrep_hpc.dist",),
        (
            "torch.nn", "effrep_hpc.models", "effrep_hpc.data", *MATH, "effrep_hpc.store", "effrep_hpc.runners",
            *ENTRY_POINTS,
        ),
    ),
    Rule(
        "torch (torch.distributed) is imported in dist/ by the torch backend only",
        ("effrep_hpc.dist",),
        ("torch",),
        except_in=("effrep_hpc.dist.torchdist",),
    ),
    Rule(
        "only store/ (and the read-only analysis package) opens HDF5 files",
        ("effrep_hpc",),
        ("h5py",),
        except_in=("effrep_hpc.store",),
    ),
    Rule("analysis/ runs without torch and without effrep_hpc", ("analysis",), ("torch", "effrep_hpc")),
    Rule(
        "models/ and data/ are below dist, store, runners and the entry points",
        ("effrep_hpc.models", "effrep_hpc.data"),
        ("effrep_hpc.dist", "effrep_hpc.store", "effrep_hpc.runners", *ENTRY_POINTS),
    ),
)

# (module, imported name) pairs that break a rule today and are to be fixed, each with the reason it is
# listed. Keep this empty when possible; a pair listed here that no longer occurs fails the test too, so
# the list cannot go stale.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the checked packages."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_names(module: str, path: Path) -> set[str]:
    """Every module name an import statement of ``path`` may load (``from a import b`` gives a and a.b)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            # `from effrep_hpc import store` imports the subpackage store
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def violations() -> dict[tuple[str, str], list[str]]:
    """(module, imported name) -> the names of the rules it breaks."""
    found: dict[tuple[str, str], list[str]] = {}
    for module, path in module_files().items():
        names = imported_names(module, path)
        for rule in RULES:
            if not _under(module, rule.where) or _under(module, rule.except_in):
                continue
            for name in sorted(names):
                if _under(name, rule.forbidden):
                    found.setdefault((module, name), []).append(rule.name)
    # `from a import b` gives a and a.b; name the more specific one only
    return {
        (module, name): rules
        for (module, name), rules in found.items()
        if not any(m == module and other.startswith(name + ".") for m, other in found)
    }


def test_the_packages_are_found() -> None:
    modules = module_files()
    assert {"effrep_hpc.landscape.evaluate", "effrep_hpc.dist.mpi", "effrep_hpc.store.h5", "analysis.surface"} <= set(modules)


def test_imports_point_down_the_layer_table() -> None:
    found = violations()
    new = {pair: rules for pair, rules in found.items() if pair not in KNOWN_VIOLATIONS}
    lines = [f"  {module} imports {name}  ({'; '.join(rules)})" for (module, name), rules in sorted(new.items())]
    assert not new, "imports against the layer table (rules in tests/test_layering.py):\n" + "\n".join(lines)
    stale = sorted(KNOWN_VIOLATIONS - set(found))
    assert not stale, f"fixed, so remove from KNOWN_VIOLATIONS: {stale}"


@pytest.mark.parametrize(
    "source,module,expected",
    [
        ("import torch.nn as nn", "effrep_hpc.dist.mpi", {"torch.nn"}),
        ("from torch import nn", "effrep_hpc.dist.mpi", {"torch", "torch.nn"}),
        ("from . import store", "effrep_hpc.cli", {"effrep_hpc", "effrep_hpc.store"}),
        ("from ..store.h5 import x", "effrep_hpc.landscape.grid", {"effrep_hpc.store.h5", "effrep_hpc.store.h5.x"}),
        ("def f():\n    import h5py", "effrep_hpc.prune.cost", {"h5py"}),
    ],
)
def test_imports_are_read_with_their_package(tmp_path: Path, source: str, module: str, expected: set[str]) -> None:
    path = tmp_path / "m.py"
    path.write_text(source + "\n")
    assert imported_names(module, path) == expected


def test_a_forbidden_import_is_reported_with_its_module_and_rule() -> None:
    rule = RULES[0]
    assert _under("effrep_hpc.landscape.evaluate", rule.where)
    assert _under("effrep_hpc.store.surface", rule.forbidden) and _under("h5py", rule.forbidden)
    assert not _under("effrep_hpc.storage", rule.forbidden)  # a prefix of the name, not of the package
