"""The learning curve of a run (or a snapshot of one) as a PNG, from its progress.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from agents.fileio import atomic_path, read_json


def plot_curve(run_dir: Path, out: Path, until: float = math.inf) -> Path:
    """Learning curve PNG from progress.csv: mean episode return and (Procgen) level-completion
    rate over training steps, plus the evaluations in evals/ as points; up to step ``until``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(run_dir / "progress.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if float(r["time/total_timesteps"]) <= until]
    steps = [float(r["time/total_timesteps"]) / 1e6 for r in rows]
    config = read_json(run_dir / "config.json")
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    returns = [float(r.get("rollout/ep_rew_mean") or "nan") for r in rows]
    ax.plot(steps, returns, lw=1, label="training episodes: mean return (last 100)")
    ax.set_xlabel("environment steps (millions)")
    ax.set_ylabel("return")
    completion = [r.get("rollout/level_complete_rate") for r in rows]
    if any(completion):
        ax2 = ax.twinx()
        values = [float(c) if c else float("nan") for c in completion]
        ax2.plot(steps, values, lw=1, color="tab:orange", label="training: levels completed")
        files = sorted((run_dir / "evals").glob("step_*.json"))
        evals = [e for e in map(read_json, files) if e["num_timesteps"] <= until]
        points = [(e["num_timesteps"] / 1e6, e["test"]) for e in evals]
        if points:
            ax2.plot(
                [s for s, _ in points],
                [t["completion_rate"] for _, t in points],
                "o",
                color="tab:red",
                label="unseen levels completed (evaluation)",
            )
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("completion rate")
        ax2.legend(loc="lower right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{config['algo'].upper()} {config['arch']} on {config['env_id']}", fontsize=9)
    fig.tight_layout()
    with atomic_path(out, ".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out
