"""`effrep submit` (SLURM arrays and jobs through submitit), `effrep status` (progress read from the HDF5 files),
`effrep merge` (array-task shards into one file) and `effrep repair` (clear entries that fail their checksums),
the last two dispatched on the file's kind through the experiment registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

SUBMIT_EPILOG = """\
COMMAND is an experiment that can be submitted (train, landscape, "quant sweep", "prune sensitivity", ...);
CONFIG and key=value overrides as
for the command itself. Cluster settings come from --cluster PRESET (configs/clusters/PRESET.yaml),
then the config's launch: section, then launch.key=value overrides. Examples:
  effrep submit landscape configs/demo/digits.yaml --cluster local --array 3 --wait
  effrep submit train configs/demo/digits.yaml --cluster generic launch.nodes=2 launch.tasks_per_node=4
  effrep submit quant sweep CONFIG --array 4
  effrep submit landscape CONFIG --local          # no SLURM: submitit's local executor, waits
Jobs are requeued on preemption or near their time limit and resume from their files."""


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit the jobs of a command; print the job ids and the files they will write."""
    from effrep_hpc.cli import UserError, split_config_args
    from effrep_hpc.launch.executor import resolve_executor
    from effrep_hpc.launch.submit import parse_command, plan_lines, plan_submission, submission_lines, submit_plan, wait_for

    words, rest = parse_command(list(args.command))
    config, overrides = split_config_args(rest)
    plan = plan_submission(words, config, overrides, cluster=args.cluster, array=args.array, folder=args.folder, after=args.after)
    kind = resolve_executor(plan.cfg.launch, args.local)
    if kind == "local" and args.after:
        raise UserError("--after needs SLURM: the local executor has no queue to hold a job back; run the jobs in order")
    if args.dry_run:
        print("\n".join(plan_lines(plan, kind)))
        return 0
    # With --json, stdout holds only the JSON document; progress goes to stderr.
    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    if kind == "local":
        say("no SLURM here (or --local): running the jobs through submitit's local executor and waiting for them")
    try:
        sub = submit_plan(plan, local=args.local, echo=say, poll_s=min(args.poll, 1.0))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    waits = args.wait or kind == "local"
    if not args.json:
        print("\n".join(submission_lines(sub)), flush=True)
    if not waits:
        if args.json:
            print(json.dumps(_submission_json(sub), indent=1))
        else:
            print(f"follow progress: effrep status {plan.outputs[0] if plan.outputs else plan.cfg.run.out}")
        return 0
    if kind == "slurm":
        final = wait_for(sub.jobs, kind=kind, poll_s=args.poll, echo=say)
    else:
        final = {j.job_id: "COMPLETED" for j in sub.jobs}  # the local run raised above otherwise
    failed = {k: v for k, v in final.items() if v != "COMPLETED"}
    if args.json:
        print(json.dumps({**_submission_json(sub), "states": final}, indent=1))
        return 1 if failed else 0
    for jid, state in final.items():
        if state != "COMPLETED":
            print(f"job {jid}: {state}")
    print(f"{len(final) - len(failed)}/{len(final)} job(s) completed; logs in {plan.folder}")
    return 1 if failed else 0


def _submission_json(sub: Any) -> dict[str, Any]:
    return {
        "command": sub.plan.command,
        "executor": sub.executor,
        "jobs": [{"id": j.job_id, "role": j.role, "command": j.command_line, "outputs": j.outputs} for j in sub.jobs],
        "outputs": [str(o) for o in sub.plan.outputs],
        "config": str(sub.plan.snapshot),
        "logs": str(sub.plan.folder),
    }


def cmd_status(args: argparse.Namespace) -> int:
    """Print points, epochs or runs done/pending/failed of an output file or directory."""
    from effrep_hpc.errors import UserError
    from effrep_hpc.launch.status import check_preview_path, collect, status_lines, write_preview

    if args.preview is not None:
        if len(args.output) != 1 or Path(args.output[0]).is_dir():
            raise UserError("--preview draws one surface: give exactly one surface file (not a directory)")
        check_preview_path(Path(args.preview))
    results = []
    for output in args.output:
        results += collect(output)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        print("\n".join(status_lines(results)))
    if args.preview is not None:
        if results[0].kind != "surface":
            raise UserError(f"--preview draws surface files; {results[0].path} is a {results[0].kind} file")
        line = write_preview(Path(args.output[0]), Path(args.preview), metric=args.metric, partial=args.partial)
        # With --json, stdout holds only the JSON document.
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge the array-task shards of one output into one file, with the merge of the shards' experiment."""
    from effrep_hpc.experiments import by_kind
    from effrep_hpc.store.h5 import open_readonly, read_attr

    shards = [Path(s) for s in args.shards]
    if not shards[0].is_file():
        raise FileNotFoundError(f"shard file not found: {shards[0]}")
    with open_readonly(shards[0]) as f:
        kind = read_attr(f, "kind")
    exp = by_kind(kind)
    if exp is None or exp.merge is None:
        raise ValueError(f"{shards[0]} is a {kind!r} file, which has no shards to merge")
    path, done, total = exp.load("merge")(shards, Path(args.output), overwrite=args.overwrite)
    print(f"merged {len(shards)} shard(s): {done}/{total} {exp.unit} done")
    print(f"{exp.kind}: {path}")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Clear the done entries of a surface or sensitivity file that fail their checksums, so a resume recomputes them."""
    from effrep_hpc.errors import UserError
    from effrep_hpc.experiments import by_kind
    from effrep_hpc.store.h5 import index_ranges, open_readonly, read_attr

    path = Path(args.file)
    with open_readonly(path) as f:
        kind = read_attr(f, "kind")
    exp = by_kind(kind)
    if exp is None or exp.repair is None:
        raise UserError(f"{path} is a {kind!r} file; effrep repair works on surface and sensitivity files")
    cleared, total = exp.load("repair")(path)
    if not len(cleared):
        print(f"{path}: no damaged {exp.unit} (every done one matches its checksum); nothing to repair")
        return 0
    print(f"cleared {len(cleared)} of {total} {exp.unit} that failed their checksums: {exp.unit} {index_ranges(cleared)}")
    print(f"run the same {exp.name} command again to recompute just those; {exp.kind}: {path}")
    return 0


def add_commands(sub: Any) -> None:
    """Add `submit`, `status`, `merge` and `repair` to the `effrep` parser."""
    _add_submit(sub).set_defaults(func=cmd_submit)
    p = sub.add_parser(
        "status",
        help="Points, epochs or runs done/pending/failed, read from the HDF5 outputs themselves.",
        description="Progress of surfaces (and their array shards), training runs (metrics.h5) and sweep files, "
        "read from the files (no accounting database needed). OUTPUT is a file or a directory to search.",
    )
    p.add_argument("output", nargs="+",
                   help="surface.h5 (its shards are found next to it), metrics.h5, a sweep file or a directory")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--preview", metavar="IMAGE",
                   help="also draw what a surface scan has computed so far (shards included; it may still be "
                        "running) into IMAGE (.png, .pdf or .svg): filled contours (a 1D scan: its curves) of the "
                        "finest complete level of the coarse-to-fine order, the title saying what fraction is "
                        "computed and at which resolution; prints the level")
    p.add_argument("--metric", default="train_loss", help="the value drawn by --preview (default train_loss)")
    p.add_argument("--partial", choices=("auto", "level", "interpolate", "mask"), default="auto",
                   help="what --preview draws of a partial scan: level (the finest complete level; an error when "
                        "none is yet), interpolate (the full grid filled in from every computed point), mask (the "
                        "computed points only), auto (level, or mask when no level is complete; the default)")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "merge", help="Merge the shard files of an array-task run (surface, sensitivity, ...) into one file.",
        description="Copy the done entries of every shard (<stem>.shard-I-of-N.h5) into one file of the same kind; "
        "the kind is read from the shards. Refuses shards of different runs.",
    )
    p.add_argument("shards", nargs="+", help="shard files (e.g. surface.shard-I-of-N.h5)")
    p.add_argument("-o", "--output", required=True, help="the file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser(
        "repair", help="Clear the points (cells) of a surface or sensitivity file that fail their checksums.",
        description="Verify every done point (cell) of FILE against the checksum written with it, and clear the "
        "ones that fail (done flag off, values NaN), so that running the same command again recomputes exactly "
        "those. A file whose stored directions are damaged cannot be repaired: start it over with --overwrite.",
    )
    p.add_argument("file", help="a surface, sensitivity or shard file")
    p.set_defaults(func=cmd_repair)


def _add_submit(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "submit",
        usage="effrep submit COMMAND CONFIG [key=value ...] [--cluster PRESET] [--array N] [--local] [--wait] ...",
        help="Submit a command to SLURM through submitit (arrays, multi-node training, preemption-safe requeue).",
        description="Submit a command to SLURM through submitit: a landscape scan as an array plus a merge job, "
        "a sweep as an array, training as one (multi-node) job. Prints the job ids and the files they will write.",
        epilog=SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", nargs="+", metavar="COMMAND CONFIG [key=value ...]",
                   help="what to run, its YAML config and overrides")
    p.add_argument("--cluster", metavar="PRESET", help="cluster preset: a name in configs/clusters/ or a YAML file")
    p.add_argument("--array", type=int, metavar="N", help="number of array tasks (default launch.array)")
    p.add_argument("--local", action="store_true", help="run through submitit's local executor on this machine (waits)")
    p.add_argument("--wait", action="store_true", help="wait until every job has finished; exit 1 if one failed")
    p.add_argument("--after", metavar="JOBID", help="start only after job JOBID succeeded (e.g. the training job)")
    p.add_argument("--folder", metavar="DIR", help="where submitit keeps logs and pickles (default <run.out>/submitit)")
    p.add_argument("--dry-run", action="store_true", help="print the jobs, their sbatch options and commands; submit nothing")
    p.add_argument("--json", action="store_true", help="print the submission as JSON")
    p.add_argument("--poll", type=float, default=5.0, help=argparse.SUPPRESS)
    return p
