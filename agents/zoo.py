"""Zoo entries and the training state behind them, moved between run directories and the repo.

A long run is trained in pieces (``train.py ... --piece-minutes M``); between pieces its
resumable state is committed under ``zoo/NAME/training/`` and restored on the next machine:

    python -m agents.zoo snapshot runs/coinrun-ppo zoo/coinrun-ppo/training
    python -m agents.zoo restore zoo/coinrun-ppo/training runs/coinrun-ppo
    python train.py ppo --resume --out runs/coinrun-ppo --piece-minutes 150
    python -m agents.zoo curve runs/coinrun-ppo zoo/coinrun-ppo/training/curve.png
    python -m agents.zoo publish runs/coinrun-ppo zoo/coinrun-ppo --episodes 1000

A snapshot holds ``config.json`` (every piece's command), ``progress.csv``, the evaluations
after each piece (``evals/``) and the latest checkpoint only (weights, optimizer, reward
normalization, resume state): a few MB for the interpretable CNN; plus a README.md card of
the run so far and its curve.png. ``publish`` turns a finished run into the entry itself
(`agents.zoo_publish`).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from agents.curves import plot_curve
from agents.fileio import atomic_path, read_json

RUN_FILES = ("config.json", "progress.csv")


class ZooError(ValueError):
    """A run or snapshot directory that is missing something."""


def checkpoint_files(run_dir: Path) -> list[Path]:
    """latest.json and the files of the checkpoint it names (zip, normalization, state)."""
    ckpt = run_dir / "checkpoints"
    latest = ckpt / "latest.json"
    if not latest.is_file():
        raise ZooError(f"{run_dir} has no checkpoint ({latest} is missing)")
    record = read_json(latest)
    stem = Path(record["model"]).stem
    files = [latest, *sorted(p for p in ckpt.glob(f"{stem}.*") if p.is_file())]
    if ckpt / record["model"] not in files:
        raise ZooError(f"{latest} names {record['model']}, which is missing")
    return files


def copy_state(src: Path, dst: Path) -> list[Path]:
    """Copy a run's resumable state from ``src`` to ``dst`` (either a run directory or a
    snapshot: same layout); older checkpoints in ``dst`` are removed. Returns what was written."""
    for name in RUN_FILES:
        if not (src / name).is_file():
            raise ZooError(f"{src} has no {name}")
    wanted = [src / name for name in RUN_FILES] + checkpoint_files(src)
    wanted += sorted((src / "evals").glob("*.json"))
    written = []
    for path in wanted:
        target = dst / path.relative_to(src)
        with atomic_path(target, path.suffix) as tmp:
            shutil.copyfile(path, tmp)
        written.append(target)
    keep = {p.name for p in written}
    for old in (dst / "checkpoints").glob("step_*"):
        if old.name not in keep:
            old.unlink()
    return written


def snapshot(run_dir: Path, dst: Path) -> list[Path]:
    """``copy_state`` into a snapshot folder, plus its README.md card and curve.png."""
    written = copy_state(run_dir, dst)
    with atomic_path(dst / "README.md") as tmp:
        tmp.write_text(status_markdown(run_dir, dst))
    return [*written, dst / "README.md", plot_curve(run_dir, dst / "curve.png")]


def _changes(piece: dict[str, Any]) -> str:
    """A piece's changed settings as ``batch_size 2048 -> 512``; empty when none changed."""
    return ", ".join(f"{k} {a} -> {b}" for k, (a, b) in piece.get("changed", {}).items())


def status_markdown(run_dir: Path, snapshot_dir: Path | None = None) -> str:
    """A short card of a run in progress: settings, pieces, steps, training time, evaluations.
    ``snapshot_dir`` (e.g. zoo/NAME/training) is where the card tells to restore from."""
    config = read_json(run_dir / "config.json")
    snap = snapshot_dir or Path("zoo") / run_dir.name / "training"
    name = snap.parent.name if snap.name == "training" else run_dir.name
    with open(run_dir / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1] if rows else {}
    steps = int(float(last.get("time/total_timesteps") or 0))
    latest = run_dir / "checkpoints" / "latest.json"
    if latest.is_file():  # the step a resume starts from; rows logged after it are redone
        steps = int(read_json(latest)["num_timesteps"])
        older = (r for r in reversed(rows) if float(r.get("time/total_timesteps") or 0) <= steps)
        last = next(older, {})
    seconds = float(last.get("time/time_elapsed") or 0)
    lines = [
        f"# Training in progress: {config['algo'].upper()} `{config['arch']}` on "
        f"`{config['env_id']}`",
        "",
        "The resumable state of an unfinished run (latest checkpoint with optimizer, reward",
        "normalization and resume state; `progress.csv` of every piece; the evaluation after",
        "each piece). Continue it with:",
        "",
        "```",
        f"python -m agents.zoo restore {snap} runs/{name}",
        f"python train.py {config['algo']} --resume --out runs/{name} --piece-minutes 150",
        "```",
        "",
        f"- steps so far: {steps:,} of {int(config['timesteps']):,}; training time "
        f"{seconds / 3600:.2f} h ({steps / max(seconds, 1):.0f} steps/s on average)",
        f"- env options: `{json.dumps(config.get('env_kwargs', {}))}`; preset "
        f"`{config.get('preset')}`",
        "",
        "| piece | from step | precision | machine | command | settings changed |",
        "|---|---|---|---|---|---|",
    ]
    pieces = config.get("pieces", [])
    if not pieces or pieces[0]["from_step"] > 0:  # begun before pieces were recorded
        pieces = [{"from_step": 0, "command": config.get("command", "?")}, *pieces]
    for i, piece in enumerate(pieces, start=1):
        lines.append(
            f"| {i} | {piece['from_step']:,} | {piece.get('precision', 'fp32')} | "
            f"{piece.get('machine', '?')} | `{piece['command']}` | {_changes(piece)} |"
        )
    evals = sorted((run_dir / "evals").glob("step_*.json"))
    if evals:
        lines += ["", "| after step | evaluation |", "|---|---|"]
    for path in evals:
        summary = read_json(path)
        test = summary["test"]
        if "completion_rate" in test:
            lo, hi = test["completion_ci95"]
            what = (
                f"{test['completed']}/{test['episodes']} unseen levels completed "
                f"({100 * test['completion_rate']:.1f}%, 95% CI {100 * lo:.1f}-{100 * hi:.1f}%), "
                f"mean return {test['mean_return']:.2f}"
            )
        else:
            what = (
                f"mean return {test['mean_return']:.2f} +- {test['return_stderr']:.2f} (s.e.) "
                f"over {test['episodes']} episodes"
            )
        lines.append(f"| {summary['num_timesteps']:,} | {what} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.zoo", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, what in (("snapshot", "run dir -> snapshot"), ("restore", "snapshot -> run dir")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("src", type=Path)
        p.add_argument("dst", type=Path)
    p = sub.add_parser("curve", help="learning-curve PNG of a run dir or snapshot")
    p.add_argument("run", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("publish", help="finished run -> zoo entry (weights, card, evaluation)")
    p.add_argument("run", type=Path)
    p.add_argument("dst", type=Path, help="the entry, e.g. zoo/coinrun-ppo")
    p.add_argument("--episodes", type=int, default=1000, help="levels/episodes per evaluation")
    p.add_argument("--checkpoint", type=Path, help="publish this checkpoint (default: final)")
    p.add_argument("--parallel", type=int, default=32, help="Procgen levels played at once")
    p.add_argument("--force", action="store_true", help="replace an existing entry")
    p.add_argument("--note-file", type=Path, help="Markdown kept under 'Notes' in the card")
    args = parser.parse_args(argv)
    from agents.sb3_zip import ModelFileError
    from agents.zoo_publish import PublishError, publish

    try:
        if args.verb == "publish":
            note = args.note_file.read_text() if args.note_file else ""
            written = publish(
                args.run, args.dst, episodes=args.episodes, checkpoint=args.checkpoint,
                parallel=args.parallel, force=args.force, note=note,
            )  # fmt: skip
            print((args.dst / "README.md").read_text())
            print(f"{len(written)} files -> {args.dst}")
        elif args.verb == "curve":
            print(plot_curve(args.run, args.out))
        else:
            if args.dst.exists() and not args.dst.is_dir():
                raise ZooError(f"{args.dst} exists and is not a directory")
            copy = snapshot if args.verb == "snapshot" else copy_state
            written = copy(args.src, args.dst)
            print(f"{len(written)} files -> {args.dst}")
    except (ZooError, PublishError, ModelFileError, OSError, KeyError) as err:
        print(f"python -m agents.zoo: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
