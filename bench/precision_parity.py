"""Learning parity of bf16: the same CoinRun PPO training at fp32 and at bf16, side by side.

Each (seed, precision) pair is one ``train.py ppo`` run (the Procgen preset, easy mode,
``paint_vel_info``, unlimited levels; ``--precision fp32`` or ``bf16``, nothing else changed)
in its own process on ``--threads`` torch threads, into ``RUNS/parity-ARCH-PRECISION-sSEED``. A run
that was interrupted is resumed (``--resume``) and a finished one is skipped, so the bench can
be stopped and started again. Then every final model plays the same ``--levels`` unseen levels
once with sampled and once with greedy actions (``agents.zoo_publish.evaluate_entry``, seed
0), and the bench prints, per run and pooled over seeds per precision: the unseen completion
with its 95% interval, the training completion over the last quarter of the run (from
``progress.csv``), the wall time and steps/s with the load average; then bf16 - fp32 with the
two-proportion p-value, and a figure of the training curves. Each finished run keeps its
results in ``parity.json`` beside its ``progress.csv`` and ``config.json``; a run whose
``parity.json`` exists is not trained or evaluated again, so those three small files are all
that must travel to another machine. ``--precisions`` trains and evaluates one half only (bf16
is ~10x slower than fp32 on a CPU without bf16 units): run the other half where it is fast.

    python bench/precision_parity.py                    # nature, seeds 0 1, 524,288 steps each
    python bench/precision_parity.py --arch interpretable --seeds 0 --steps 1048576
    python bench/precision_parity.py --figure docs/results/figures/parity.png
    python bench/precision_parity.py --precisions fp32   # one half now, the other elsewhere

With ``--threads 1`` the nature runs take ~7-20 minutes each on a Zen 4 core (bf16 is slower
there), the interpretable ones hours. The last line of stdout is a JSON summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agents.evaluate import wilson_interval
from agents.fileio import atomic_path, read_json, write_json
from interpret.audit.comparison import two_proportion_p

ROOT = Path(__file__).resolve().parents[1]

PRECISIONS = ("fp32", "bf16")
RESULT = "parity.json"  # in each run directory: its training summary and evaluation
ENV_ARGS = ["--env", "procgen:coinrun", "--env-kwargs", "distribution_mode=easy",
            "paint_vel_info=true", "num_levels=0"]  # fmt: skip


def run_name(arch: str, precision: str, seed: int) -> str:
    return f"parity-{arch}-{precision}-s{seed}"


def train_command(arch: str, steps: int, seed: int, precision: str, out: Path) -> list[str]:
    """The ``train.py ppo`` command of one run (``--resume`` continues it where it stopped)."""
    if (out / "config.json").exists():
        return ["train.py", "ppo", "--resume", "--no-progress", "--out", str(out)]
    return ["train.py", "ppo", *ENV_ARGS, "--arch", arch, "--timesteps", str(steps),
            "--eval-episodes", "200", "--no-progress", "--seed", str(seed),
            "--precision", precision, "--out", str(out)]  # fmt: skip


def train(command: list[str], threads: int, log: Path) -> dict[str, Any]:
    """Run one training to its end in a child process; its wall time and the load around it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load_before, started = os.getloadavg()[0], time.monotonic()
    with open(log, "a") as out:
        subprocess.run([sys.executable, *command], cwd=ROOT, env=env, stdout=out,
                       stderr=subprocess.STDOUT, check=True)  # fmt: skip
    load_after = os.getloadavg()[0]
    return {"load_avg_before": round(load_before, 2), "load_avg_after": round(load_after, 2),
            "wall_s_this_call": round(time.monotonic() - started, 1)}  # fmt: skip


def progress_rows(run: Path) -> list[dict[str, float]]:
    """progress.csv as floats (empty cells: nan)."""
    with open(run / "progress.csv", newline="") as f:
        return [{k: float(v) if v else math.nan for k, v in r.items()} for r in csv.DictReader(f)]


def training_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Steps, training seconds, steps/s, and the mean training completion and return over the
    last quarter of the iterations."""
    tail = rows[-max(1, len(rows) // 4) :]
    steps, seconds = rows[-1]["time/total_timesteps"], rows[-1]["time/time_elapsed"]
    return {
        "steps": int(steps),
        "train_seconds": seconds,
        "steps_per_s": steps / seconds,
        "train_completion_last_quarter": _mean(r["rollout/level_complete_rate"] for r in tail),
        "train_return_last_quarter": _mean(r["rollout/ep_rew_mean"] for r in tail),
    }


def _mean(values: Any) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def pooled(runs: list[dict[str, Any]], precision: str, mode: str) -> tuple[int, int]:
    """Completed levels and levels played, summed over the seeds of one precision."""
    mine = [r[mode] for r in runs if r["precision"] == precision]
    return sum(m["completed"] for m in mine), sum(m["episodes"] for m in mine)


def plot(runs: list[dict[str, Any]], rows: dict[str, list[dict[str, float]]], out: Path) -> None:
    """Training completion (last 100 episodes) against steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for run in runs:
        r = rows[run["name"]]
        style = "-" if run["precision"] == "fp32" else "--"
        color = f"C{run['seed']}"
        ax.plot([x["time/total_timesteps"] / 1e6 for x in r],
                [x["rollout/level_complete_rate"] for x in r], style, color=color, lw=1,
                label=f"{run['precision']} seed {run['seed']}")  # fmt: skip
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("training: levels completed (last 100)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    shown = {run["precision"] for run in runs}
    title = " vs ".join(f"{p} ({'solid' if p == 'fp32' else 'dashed'})" for p in PRECISIONS
                        if p in shown)  # fmt: skip
    ax.set_title(f"PPO {runs[0]['arch']} on CoinRun: {title}", fontsize=9)
    fig.tight_layout()
    with atomic_path(out, ".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def run_and_evaluate(
    out: Path, seed: int, precision: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Train one run into ``out`` to its end (resuming it if it was interrupted), then evaluate
    its final model on ``args.levels`` unseen levels, sampled and greedy."""
    from agents.zoo_publish import evaluate_entry

    name, arch, log = out.name, args.arch, out.parent / f"{out.name}.log"
    run: dict[str, Any] = {"name": name, "arch": arch, "seed": seed, "precision": precision}
    if not (out / "model.zip").exists():
        command = train_command(arch, args.steps, seed, precision, out)
        print(f"{name}: training ({' '.join(command)})", flush=True)
        run.update(train(command, args.threads, log))
    run.update(training_summary(progress_rows(out)))
    scores = evaluate_entry(out / "model.zip", args.levels, modes=("sampled", "greedy"))
    run["sampled"], run["greedy"] = scores["sampled"], scores["greedy"]
    run["eval_seconds"] = scores["eval_seconds"]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="nature", choices=("nature", "interpretable", "impala"))
    parser.add_argument("--steps", type=int, default=524_288, help="steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--levels", type=int, default=1000, help="unseen levels per evaluation")
    parser.add_argument(
        "--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
        help="the halves to train and evaluate now (bf16 wants a CPU with bf16 units or a GPU)",
    )  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="where the runs go")
    parser.add_argument("--figure", type=Path, help="PNG of the training curves")
    args = parser.parse_args()
    if args.steps < 1 or args.levels < 1 or args.threads < 1 or min(args.seeds) < 0:
        parser.error("--steps, --levels and --threads must be positive, --seeds non-negative")
    if args.figure is not None and args.figure.suffix != ".png":
        parser.error(f"--figure must end in .png, got {args.figure}")

    runs_dir = args.runs if args.runs.is_absolute() else ROOT / args.runs
    for seed in args.seeds:  # a run kept from an earlier call must be the one asked for
        for precision in args.precisions:
            config = runs_dir / run_name(args.arch, precision, seed) / "config.json"
            want = {"arch": args.arch, "seed": seed, "timesteps": args.steps}
            have = {k: read_json(config).get(k) for k in want} if config.exists() else want
            if have != want:
                parser.error(f"{config.parent} was started with {have}, not {want}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs, rows = [], {}
    for seed in args.seeds:
        for precision in args.precisions:
            name = run_name(args.arch, precision, seed)
            out = runs_dir / name
            done = out / RESULT  # training and evaluation finished: reused as they are
            if done.exists():
                run = read_json(done)
            else:
                run = run_and_evaluate(out, seed, precision, args)
                write_json(done, run)
            rows[name] = progress_rows(out)
            s = run["sampled"]
            lo, hi = s["completion_ci95"]
            print(
                f"{name}: {run['steps']:,} steps in {run['train_seconds'] / 60:.1f} min "
                f"({run['steps_per_s']:.0f} steps/s); unseen {s['completed']}/{s['episodes']} "
                f"= {s['completion_rate']:.1%} ({lo:.1%}-{hi:.1%}), greedy "
                f"{run['greedy']['completion_rate']:.1%}; training completion, last quarter "
                f"{run['train_completion_last_quarter']:.3f}; "
                f"load avg now {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            runs.append(run)

    summary: dict[str, Any] = {"arch": args.arch, "steps": args.steps, "seeds": args.seeds,
                               "levels": args.levels, "runs": runs}  # fmt: skip
    for mode in ("sampled", "greedy") if len(args.precisions) == 2 else ():
        (k32, n32), (k16, n16) = pooled(runs, "fp32", mode), pooled(runs, "bf16", mode)
        p = two_proportion_p(k16, n16, k32, n32)
        ci32, ci16 = wilson_interval(k32, n32), wilson_interval(k16, n16)
        print(
            f"pooled over seeds, {mode}: fp32 {k32}/{n32} = {k32 / n32:.1%} "
            f"({ci32[0]:.1%}-{ci32[1]:.1%}), bf16 {k16}/{n16} = {k16 / n16:.1%} "
            f"({ci16[0]:.1%}-{ci16[1]:.1%}); bf16 - fp32 = {k16 / n16 - k32 / n32:+.1%}, "
            f"p = {p:.3g}"
        )
        summary[f"{mode}_fp32"], summary[f"{mode}_bf16"] = k32 / n32, k16 / n16
        summary[f"{mode}_p_value"] = p
    speed = {prec: _mean(r["steps_per_s"] for r in runs if r["precision"] == prec)
             for prec in args.precisions}  # fmt: skip
    if len(speed) == 2:
        summary["steps_per_s_bf16_over_fp32"] = speed["bf16"] / speed["fp32"]
        print(f"steps/s, bf16 / fp32 (mean of runs): {speed['bf16'] / speed['fp32']:.2f}")
    if args.figure is not None:
        plot(runs, rows, args.figure)
        print(f"figure: {args.figure}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
