"""`effrep submit` against submitit's mocked sbatch: the #SBATCH lines, arrays, afterok, task commands."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import pytest
import submitit
from submitit.core.test_core import MockedSubprocess
from submitit.core.utils import DelayedSubmission

from effrep_hpc.cli import main
from effrep_hpc.config import ConfigError, load_config
from effrep_hpc.launch.executor import load_submit_config, preset_names
from effrep_hpc.launch.submit import parse_command, plan_submission, submit_plan
from effrep_hpc.launch.tasks import CommandTask, DistributedTask

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/demo/digits.yaml")


@contextlib.contextmanager
def mocked_sbatch() -> Iterator[MockedSubprocess]:
    """submitit's sbatch/sacct mock; `sbatch` and `srun` look installed. The first job id is 12."""
    mock = MockedSubprocess(known_cmds=["srun", "sbatch"])
    try:
        with mock.context():
            yield mock
    finally:
        submitit.SlurmJob.watcher.clear()


def sbatch_lines(folder: Path, job_id: str) -> dict[str, str]:
    """The #SBATCH options of the submission file of ``job_id`` as {option: value}."""
    text = (folder / job_id / f"{job_id}_submission.sh").read_text()
    options = {}
    for m in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", text, re.M):
        options[m.group(1)] = m.group(2) if m.group(2) is not None else True
    return options


def submitted_task(folder: Path, job_id: str) -> object:
    return DelayedSubmission.load(folder / job_id / f"{job_id}_submitted.pkl").function


def test_landscape_is_an_array_then_an_afterok_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    overrides = [f"run.out={tmp_path}/run", "landscape.x=-1:1:5", "landscape.y=-1:1:4"]
    plan = plan_submission(["landscape"], CONFIG, overrides, cluster="local", array=3)
    with mocked_sbatch():
        sub = submit_plan(plan)
    folder = tmp_path / "run" / "submitit"
    assert sub.executor == "slurm"
    assert sub.step_ids("array") == ["12_0", "12_1", "12_2"] and sub.step_ids("merge") == ["13"]
    array = sbatch_lines(folder, "12")
    assert array["array"] == "0-2%3"
    assert (array["partition"], array["time"], array["cpus-per-task"]) == ("debug", "30", "1")
    assert array["signal"] == "USR2@30" and array["requeue"] is True
    assert "dependency" not in array
    merge = sbatch_lines(folder, "13")
    assert merge["dependency"] == "afterok:12" and merge["kill-on-invalid-dep"] == "yes"
    assert merge["time"] == "5" and "array" not in merge
    # every task runs the config snapshot with its own block; the merge assembles the three shards
    snapshot = str(plan.snapshot)
    assert load_config(snapshot).landscape.x == "-1:1:5"
    for i in range(3):
        task = submitted_task(folder, f"12_{i}")
        assert isinstance(task, CommandTask)
        assert task.argv == ["landscape", snapshot, "dist.backend=array", f"dist.task_id={i}", "dist.num_tasks=3"]
        assert task.outputs == [f"{tmp_path}/run/surface.shard-{i}-of-3.h5"] and task.cwd == str(tmp_path)
    merge_task = submitted_task(folder, "13")
    assert merge_task.argv == ["merge", *(f"{tmp_path}/run/surface.shard-{i}-of-3.h5" for i in range(3)), "-o", f"{tmp_path}/run/surface.h5"]


def test_training_is_one_multinode_job_with_distributed_tasks(tmp_path: Path) -> None:
    overrides = [f"run.out={tmp_path}/run", "launch.nodes=2", "launch.mem_gb=12.5", "launch.account=proj7"]
    plan = plan_submission(["train"], CONFIG, overrides, cluster="generic", after="7")
    with mocked_sbatch():
        sub = submit_plan(plan)
    assert sub.step_ids("train") == ["12"]
    folder = tmp_path / "run" / "submitit"
    opts = sbatch_lines(folder, "12")
    # generic preset: 4 tasks x 1 GPU per node, 8 CPUs each; overrides: 2 nodes, 12.5 GB, account
    assert (opts["nodes"], opts["ntasks-per-node"], opts["gpus-per-task"], opts["cpus-per-task"]) == ("2", "4", "1", "8")
    assert opts["mem"] == "12800MB" and opts["account"] == "proj7" and opts["partition"] == "gpu"
    assert opts["time"] == "240" and opts["signal"] == "USR2@300" and opts["dependency"] == "afterok:7"
    script = (folder / "12" / "12_submission.sh").read_text()
    assert "module load python/3.11 cuda" in script  # the preset's setup lines run before srun
    assert isinstance(submitted_task(folder, "12"), DistributedTask)


def test_config_launch_section_wins_over_preset_and_overrides_win_over_both(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("launch:\n  cluster: generic\n  partition: long\n  time: 600\n  sbatch: {mail-type: END}\n")
    cfg = load_submit_config(str(cfg_file), ["launch.time=90"])
    launch = cfg.launch
    assert (launch.partition, launch.time, launch.cluster) == ("long", 90, "generic")
    assert launch.gpus_per_task == 1 and launch.array == 16  # from the preset
    plan = plan_submission(["train"], str(cfg_file), [f"run.out={tmp_path}/r", "launch.time=90"])
    with mocked_sbatch():
        submit_plan(plan)
    opts = sbatch_lines(tmp_path / "r" / "submitit", "12")
    assert (opts["partition"], opts["time"], opts["mail-type"]) == ("long", "90", "END")


def test_unknown_preset_and_misspelt_preset_key_are_named(tmp_path: Path) -> None:
    assert {"generic", "local"} <= set(preset_names())
    with pytest.raises(ConfigError, match="unknown cluster preset 'locl'; did you mean 'local'"):
        load_submit_config(CONFIG, [], cluster="locl")
    bad = tmp_path / "mine.yaml"
    bad.write_text("partiton: gpu\n")
    with pytest.raises(ConfigError, match=r"partiton: unknown key; did you mean partition\?"):
        load_submit_config(CONFIG, [], cluster=str(bad))
    with pytest.raises(ConfigError, match="launch.sbatch.array: set by effrep submit itself"):
        load_submit_config(CONFIG, ["launch.sbatch={array: 1-3}"])


def test_array_larger_than_the_grid_and_unknown_commands_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more tasks than there are work items \\(6\\)"):
        plan_submission(["landscape"], CONFIG, [f"run.out={tmp_path}", "landscape.x=-1:1:3", "landscape.y=-1:1:2"], array=7)
    with pytest.raises(ValueError, match="did you mean 'landscape'"):
        parse_command(["landscpe", CONFIG])
    assert parse_command(["quant", "sweep", CONFIG, "a=1"]) == (("quant", "sweep"), [CONFIG, "a=1"])
    assert parse_command(["quant-sweep", CONFIG]) == (("quant", "sweep"), [CONFIG])


def test_one_task_scan_writes_the_surface_itself(tmp_path: Path) -> None:
    plan = plan_submission(["landscape"], CONFIG, [f"run.out={tmp_path}"], array=1)
    assert [s.role for s in plan.steps] == ["run"] and plan.outputs == [tmp_path / "surface.h5"]
    assert plan.steps[0].tasks[0].argv[-1] == "dist.backend=serial"


def test_cli_dry_run_prints_options_and_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with mocked_sbatch() as mock:
        code = main(["submit", "landscape", CONFIG, f"run.out={tmp_path}", "--cluster", "local", "landscape.x=-1:1:4", "--array", "2", "--dry-run"])
        assert mock.job_count == 12  # no sbatch call
    out = capsys.readouterr().out
    assert code == 0
    assert "#SBATCH --array=0-1" in out and "#SBATCH --requeue" in out and "#SBATCH --signal=USR2@30" in out
    assert "dist.task_id=1 dist.num_tasks=2" in out
    assert f"writes: {tmp_path}/surface.h5" in out
    assert not (tmp_path / "submitit").exists()


def test_cli_submit_prints_job_ids_and_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with mocked_sbatch():
        code = main(["submit", "landscape", CONFIG, f"run.out={tmp_path}", "landscape.x=-1:1:4", "--array", "2", "--cluster", "local"])
    out = capsys.readouterr().out
    assert code == 0
    assert "array: array 12 of 2 task(s): 12_0 12_1" in out
    assert "merge: job 13 (starts when all of step 'array' succeeded)" in out
    assert f"writes {tmp_path}/surface.shard-1-of-2.h5" in out and f"output: {tmp_path}/surface.h5" in out
    assert f"effrep status {tmp_path}/surface.h5" in out


def test_checkpoint_requeues_the_same_command() -> None:
    task = CommandTask(["landscape", "c.yaml", "dist.task_id=2"], cwd="/somewhere", outputs=["s.h5"])
    again = task.checkpoint()
    assert isinstance(again, DelayedSubmission)
    assert isinstance(again.function, CommandTask) and again.function is not task
    assert (again.function.argv, again.function.cwd, again.function.outputs) == (task.argv, task.cwd, task.outputs)


def test_executor_slurm_without_sbatch_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    plan = plan_submission(["train"], CONFIG, [f"run.out={tmp_path}", "launch.executor=slurm"])
    with pytest.raises(ValueError, match="sbatch is not on PATH.*--local"):
        submit_plan(plan)


def test_sweeps_are_arrays_writing_one_file_or_merged_shards(tmp_path: Path) -> None:
    quant = plan_submission(
        ["quant", "sweep"], str(ROOT / "configs/demo/quant_digits.yaml"),
        [f"run.out={tmp_path}/q", "quant.sweep.algorithms=[bc,sr]", "quant.sweep.bits=[1]", "quant.sweep.seeds=[0,1]"], array=4,
    )
    assert [s.role for s in quant.steps] == ["array"]  # every task writes its runs into the one sweep file
    assert [t.argv[3:] for t in quant.steps[0].tasks] == [
        ["dist.backend=array", f"dist.task_id={i}", "dist.num_tasks=4"] for i in range(4)
    ]
    assert quant.outputs == [tmp_path / "q" / "sweep.h5"]
    with pytest.raises(ValueError, match=r"more tasks than there are work items \(4\)"):
        plan_submission(["quant", "sweep"], str(ROOT / "configs/demo/quant_digits.yaml"),
                        [f"run.out={tmp_path}/q", "quant.sweep.algorithms=[bc,sr]", "quant.sweep.bits=[1]", "quant.sweep.seeds=[0,1]"], array=5)
    prune = plan_submission(["prune", "sensitivity"], str(ROOT / "configs/demo/prune_digits.yaml"), [f"run.out={tmp_path}/p"], array=2)
    assert [s.role for s in prune.steps] == ["array", "merge"]
    assert prune.steps[0].tasks[1].argv[3:] == ["dist.backend=array", "dist.task_id=1", "dist.num_tasks=2"]
    shards = [f"{tmp_path}/p/sensitivity.shard-{i}-of-2.h5" for i in range(2)]
    assert prune.steps[1].tasks[0].argv == ["merge", *shards, "-o", f"{tmp_path}/p/sensitivity.h5"]
