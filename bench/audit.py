"""Audit throughput with 1 vs 2 workers, and what labelling failures costs, in one run.

Audits the same `--levels` CoinRun levels twice with `interpret.audit.run_audit`: once with a
pool of 1 worker process and once with 2 (`agents.executor.LocalExecutor`), checks that both
give the same outcome for every level (actions are sampled per level, so the split does not
matter), and reports levels/s and env steps/s of each. From the same runs: the seconds spent
reading the game state before every step and labelling each failure's cause, as a share of
the workers' playing time. Each worker runs torch with cpus / workers threads, and procgen
steps every env of a chunk in a thread of its own, so even 1 worker uses every core: on 2
cores a second worker gains little (and the ratio moves with load); more cores pay off. The
model is `--model` (a run directory or zip) or, without one, a freshly initialised
interpretable-CNN PPO policy (speed does not depend on the weights; an untrained policy plays
longer episodes, so per-level figures are lower than a trained agent's).

    python bench/audit.py --levels 200            # ~3-6 min on 2 idle cores
    python bench/audit.py --model runs/demo --levels 500

The last line of stdout is a JSON summary; every ratio in it is measured in this run.
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.executor import LocalExecutor
from interpret.audit import AuditResult, run_audit


def fresh_model(directory: Path) -> str:
    """A freshly initialised interpretable-CNN PPO on CoinRun, saved as a zip."""
    import envs
    from agents.algorithms import PPO
    from agents.policies import HWCActorCriticPolicy

    venv = envs.make_vec_env("procgen:coinrun", 1, 0, distribution_mode="easy")
    model = PPO(HWCActorCriticPolicy, venv, policy_kwargs={"arch": "interpretable"}, seed=0)
    path = directory / "fresh.zip"
    model.save(path)
    venv.close()
    return str(path)


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def audit(model: str, levels: list[int], workers: int, args: argparse.Namespace) -> AuditResult:
    with LocalExecutor(workers) as executor:
        executor.map(abs, [0] * workers)  # start the pool outside the timing
        return run_audit(
            model, "procgen:coinrun", levels, env_options={"distribution_mode": args.mode},
            executor=executor, n_envs=args.envs, keep_failures=0, extremes=0,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run directory or zip (default: a fresh policy)")
    parser.add_argument("--levels", type=int, default=200)
    parser.add_argument("--envs", type=int, default=16, help="envs per worker")
    parser.add_argument("--mode", default="easy", help="CoinRun distribution_mode")
    parser.add_argument("--start-level", type=int, default=2**30)
    args = parser.parse_args()

    levels = list(range(args.start_level, args.start_level + args.levels))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or fresh_model(Path(tmp))
        busy, wall = machine_busy_seconds(), time.perf_counter()
        results = {}
        for workers in (1, 2):
            results[workers] = audit(model, levels, workers, args)
            t = results[workers].timings
            print(
                f"{workers} worker(s): {t['levels_per_s']:.2f} levels/s, "
                f"{t['steps'] / t['wall_s']:.0f} steps/s, wall {t['wall_s']:.1f} s"
            )
        wall = time.perf_counter() - wall
        busy = machine_busy_seconds() - busy
    one, two = results[1], results[2]
    same = bool(
        np.array_equal(one.completed, two.completed)
        and np.array_equal(one.lengths, two.lengths)
        and [c and c.label for c in one.causes] == [c and c.label for c in two.causes]
    )
    play = sum(r.timings["worker_play_s"] for r in results.values())
    reads = sum(r.timings["state_read_s"] for r in results.values())
    labels = sum(r.timings["label_s"] for r in results.values())
    failures = sum(int((~r.completed).sum()) for r in results.values())
    own = os.times()  # pool workers are the forkserver's children: they report their own CPU
    own_cpu = own.user + own.system + sum(r.timings["worker_cpu_s"] for r in results.values())
    summary = {
        "levels": args.levels,
        "mode": args.mode,
        "model": args.model or "fresh interpretable PPO",
        "levels_per_s_1_worker": one.timings["levels_per_s"],
        "levels_per_s_2_workers": two.timings["levels_per_s"],
        "speedup_2_vs_1": two.timings["levels_per_s"] / one.timings["levels_per_s"],
        "steps_per_level": one.timings["steps"] / args.levels,
        "same_outcomes_1_vs_2": same,
        "completion_rate": float(one.completed.mean()),
        "failures_labelled": failures,
        "state_read_share_of_play": reads / play,
        "label_share_of_play": labels / play,
        "labelling_share_of_play": (reads + labels) / play,
        "ms_per_label": 1000 * labels / max(failures, 1),
        "cpus": os.cpu_count(),
        "other_processes_cpu_share": max(0.0, busy - own_cpu) / (wall * (os.cpu_count() or 1)),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
