"""benchmarks/run_all.py: reading RESULT lines, judging a run, the Markdown table, arguments per mode, the CUDA guard."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_last_result_line_is_read_and_other_output_ignored(run_all) -> None:
    first = {"benchmark": "x", "figures": {"a": 1.5}, "passed": True}
    last = {"benchmark": "x", "figures": {"a": 2.5, "name": "b|c"}, "targets": [], "passed": None}
    output = "\n".join(["warming up", "RESULT " + json.dumps(first), "a line that mentions RESULT {}", "RESULT " + json.dumps(last),
                        "done"])
    assert run_all.parse_result(output) == last


@pytest.mark.parametrize("output", ["no result here\n", "RESULT {not json", "RESULT [1, 2]", " RESULT {}\n", ""])
def test_missing_or_broken_result_lines_give_none(run_all, output: str) -> None:
    assert run_all.parse_result(output) is None


@pytest.mark.parametrize(
    ("returncode", "timed_out", "result", "expected"),
    [
        (0, False, {"passed": True}, "pass"),
        (0, False, {"passed": False}, "FAIL"),
        (0, False, {"passed": None}, "no target"),
        (0, False, {}, "no target"),
        (1, False, {"passed": False}, "FAIL (exit 1)"),
        (0, False, None, "no RESULT line"),
        (3, False, None, "error (exit 3)"),
        (None, True, None, "timeout"),
        (None, True, {"passed": True}, "timeout"),
    ],
)
def test_status_of_a_run(run_all, returncode, timed_out, result, expected: str) -> None:
    assert run_all.status(returncode, timed_out, result) == expected


def test_table_has_one_row_per_benchmark_with_its_figures_ratios_time_and_targets(run_all) -> None:
    result = {
        "benchmark": "queue_sim", "summary": "efficiency 0.958 | 32 ranks", "figures": {"efficiency": 0.958},
        "ratios": {"original_over_ours": 42.66},
        "targets": [{"name": "queue efficiency", "value": 0.958, "op": ">=", "target": 0.95, "met": True}], "passed": True,
    }
    rows = [
        {"benchmark": "queue_sim", "seconds": 61.4, "status": "pass", "result": result},
        {"benchmark": "plain", "seconds": 3.0, "status": "no RESULT line", "result": None},
    ]
    lines = run_all.markdown_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    for line in lines:  # six columns: an escaped | in a cell does not split it
        assert line.replace("\\|", "").count("|") == 7
    cells = [c.strip() for c in lines[2].replace("\\|", "/").strip("|").split("|")]
    assert cells == ["queue_sim", "efficiency 0.958 / 32 ranks", "original_over_ours 42.7x", "61 s",
                     "queue efficiency: 0.958 >= 0.95 met", "pass"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["plain", "-", "-", "3 s", "-", "no RESULT line"]


def test_arguments_per_mode(run_all) -> None:
    assert run_all.plan_args("queue_sim", "", "cpu", True) == run_all.PLANS["queue_sim"]["quick"]
    assert run_all.plan_args("prune_speedup", "", "cuda", False)[:2] == ["--device", "cuda"]
    # a benchmark the plans do not know: its own options decide
    source = 'parser.add_argument("--quick")\nparser.add_argument("--device")\n'
    assert run_all.plan_args("new_one", source, "cpu", False) == []
    assert run_all.plan_args("new_one", source, "cpu", True) == ["--quick"]
    assert run_all.plan_args("new_one", source, "cuda", False) == ["--quick", "--device", "cuda"]
    assert run_all.plan_args("new_one", "", "cuda", True) == []


def test_benchmarks_are_found_by_listing_the_folder(run_all, tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "_helper.py", "run_all.py", "notes.md"):
        (tmp_path / name).write_text("")
    assert [p.name for p in run_all.discover(tmp_path)] == ["a.py", "b.py"]


def test_list_names_every_benchmark_and_runs_nothing(run_all, capsys) -> None:
    assert run_all.main(["--list", "--quick"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [p.stem for p in run_all.discover()]


def test_an_unknown_benchmark_name_is_refused(run_all, capsys) -> None:
    assert run_all.main(["--list", "--only", "queue_simm"]) == 2
    assert "unknown benchmark(s) queue_simm" in capsys.readouterr().err


def test_cuda_without_a_gpu_stops_with_one_line(run_all, capsys) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert run_all.main(["--device", "cuda"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "CUDA is not available" in captured.err
