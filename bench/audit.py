"""Audit throughput: today's engine ("stepwise") vs the new one ("replay"), side by side in one run.

Audits the same `--levels` CoinRun levels with `interpret.audit.engine.run_audit` once per
engine and round, alternating (``--rounds``; each engine's fastest round counts, the least
disturbed by other processes), with the same executor (`agents.executor.LocalExecutor` with
`--workers` processes, the CLI's default 2, each running torch with cpus / workers threads; or
``--workers 0`` for this process), the same envs per worker and the same seed:

- ``stepwise``: the audit before the replay engine: every env's game state is read before
  every step, every frame kept, the network run on every env of the chunk every step, one
  Python call per env to sample its action.
- ``replay``: actions, rewards and values recorded; the network sees the envs still playing
  only; actions sampled in one vectorized step; the states before fatal steps (and the frames
  of kept failures and extreme steps) recovered by replaying the recorded actions.
- with ``--bf16``, also ``replay`` under bfloat16 autocast (its outcomes may differ: the
  rounding changes some sampled actions; the number of levels that differ is printed).

It checks and prints that both fp32 engines give the same completion, length and cause on
every level and the same fatal states, and reports levels/s and env steps/s of each, their
ratio, levels per CPU-second of the workers (less disturbed by load than wall time), and the
machine's load (load average, and the share of the CPUs other processes used).

Most of the gain is the end of each chunk: the stepwise engine still runs the network on every
env whose level has ended, until the chunk's last level ends; the bench prints the network
rows per env step of each engine. That tail is a large share of a short audit (a few levels
per env: the default here, or the demo's 200 levels) and a small one of a long audit (1,000
levels with 2 workers x 16 envs: ~16 levels per env; 10,000: ~160), where what is left is the
state reads and the per-step Python (``--levels 128 --envs 4`` measures that case cheaply).
Both engines' network passes cost the same per observation; the network is most of the work.

The model is `--model` (a run directory or zip) or, without one, a freshly initialised
interpretable-CNN PPO policy whose action head is set to jump right (p 0.6) or run right
(p 0.3), as the tests' runner: a stand-in for a competent agent, whose CoinRun episodes end in
~30-100 steps with both completions and failures (the network's cost per step does not depend
on its weights).

    python bench/audit.py                          # 64 levels, 2 rounds (~1 min on 2 idle cores)
    python bench/audit.py --model runs/demo --levels 500 --rounds 1

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

from agents.executor import LocalExecutor, SerialExecutor
from interpret.audit.engine import AuditResult, run_audit

SIDES = {"stepwise": ("stepwise", "fp32"), "replay": ("replay", "fp32")}


def fresh_model(directory: Path) -> str:
    """A freshly initialised interpretable-CNN PPO on CoinRun that jumps right, saved as a zip."""
    import torch

    import envs
    from agents.algorithms import PPO
    from agents.policies import HWCActorCriticPolicy

    venv = envs.make_vec_env("procgen:coinrun", 1, 0, distribution_mode="easy")
    model = PPO(HWCActorCriticPolicy, venv, policy_kwargs={"arch": "interpretable"}, seed=0)
    probs = np.full(15, 0.1 / 13)
    probs[8], probs[7] = 0.6, 0.3  # procgen's combos: 7 RIGHT, 8 RIGHT+UP
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.as_tensor(np.log(probs)))
    path = directory / "fresh.zip"
    model.save(path)
    venv.close()
    return str(path)


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def outcomes(result: AuditResult) -> tuple:
    return (
        result.completed.tolist(),
        result.lengths.tolist(),
        [c.label if c else None for c in result.causes],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="run directory or zip (default: a fresh policy)")
    parser.add_argument("--levels", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per engine")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (0: serial)")
    parser.add_argument("--envs", type=int, default=16, help="envs per worker")
    parser.add_argument("--mode", default="easy", help="CoinRun distribution_mode")
    parser.add_argument("--start-level", type=int, default=2**30)
    parser.add_argument("--bf16", action="store_true", help="also time replay under bf16")
    args = parser.parse_args()

    sides = dict(SIDES)
    if args.bf16:
        sides["replay-bf16"] = ("replay", "bf16")
    levels = list(range(args.start_level, args.start_level + args.levels))
    load_before = os.getloadavg()[0]
    results: dict[str, AuditResult] = {}
    walls: dict[str, list[float]] = {name: [] for name in sides}
    cpus: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or fresh_model(Path(tmp))
        executor = LocalExecutor(args.workers) if args.workers else SerialExecutor()
        with executor:
            # Warm up outside the timing: start the pool, load the model and the labeller in
            # every worker (4 chunks per worker, on levels before the timed ones).
            warm_up = [args.start_level - 1 - i for i in range(4 * max(1, args.workers))]
            for engine, precision in sorted(set(sides.values())):
                run_audit(
                    model, "procgen:coinrun", warm_up, env_options={"distribution_mode": args.mode},
                    executor=executor, chunks=len(warm_up), n_envs=1, keep_failures=0, extremes=0,
                    engine=engine, precision=precision,
                )  # fmt: skip
            busy, wall, own = machine_busy_seconds(), time.perf_counter(), os.times()
            worker_cpu = 0.0
            for _ in range(args.rounds):
                for name, (engine, precision) in sides.items():
                    result = run_audit(
                        model, "procgen:coinrun", levels,
                        env_options={"distribution_mode": args.mode}, executor=executor,
                        n_envs=args.envs, keep_failures=0, extremes=0, engine=engine,
                        precision=precision,
                    )  # fmt: skip
                    t = result.timings
                    walls[name].append(t["wall_s"])
                    cpus[name].append(t["worker_cpu_s"])
                    worker_cpu += t["worker_cpu_s"]
                    results[name] = result
                    print(
                        f"{name:12s} {args.levels / t['wall_s']:6.2f} levels/s, "
                        f"{t['steps'] / t['wall_s']:6.0f} steps/s, wall {t['wall_s']:6.1f} s, "
                        f"worker CPU {t['worker_cpu_s']:6.1f} s",
                        flush=True,
                    )
            wall = time.perf_counter() - wall
            busy = machine_busy_seconds() - busy
            now = os.times()
    old, new = results["stepwise"], results["replay"]
    same = outcomes(old) == outcomes(new) and old.fatal_states == new.fatal_states
    best = {name: args.levels / min(walls[name]) for name in sides}
    per_cpu = {name: args.levels / min(cpus[name]) for name in sides}
    # Pool workers are the forkserver's children: they report their own CPU time.
    own_cpu = (now.user - own.user) + (now.system - own.system) + worker_cpu
    cpus_n = os.cpu_count() or 1
    others = max(0.0, busy - own_cpu) / (wall * cpus_n)
    failed = int((~new.completed).sum())
    ratio = best["replay"] / best["stepwise"]
    ratio_cpu = per_cpu["replay"] / per_cpu["stepwise"]
    print(
        f"same outcome (completion, length, cause) and fatal state on all {args.levels} "
        f"levels: {same}; {int(new.completed.sum())} completed, {failed} failed, "
        f"{new.timings['steps'] / args.levels:.0f} steps per level"
    )
    rows = {name: r.timings["network_rows"] / r.timings["steps"] for name, r in results.items()}
    print(
        "network rows per env step: "
        + ", ".join(f"{name} {value:.2f}" for name, value in rows.items())
        + " (stepwise runs the network on finished envs too, until its chunk ends)"
    )
    print(f"replay / stepwise: {ratio:.2f}x levels/s (wall), {ratio_cpu:.2f}x per CPU-second")
    summary = {
        "levels": args.levels,
        "mode": args.mode,
        "model": args.model or "fresh interpretable PPO, jumping right",
        "workers": args.workers,
        "envs_per_worker": args.envs,
        "rounds": args.rounds,
        "levels_per_s": best,
        "levels_per_cpu_s": per_cpu,
        "speedup": ratio,
        "speedup_per_cpu_s": ratio_cpu,
        "same_outcomes": same,
        "network_rows_per_step": rows,
        "steps_per_level": new.timings["steps"] / args.levels,
        "completion_rate": float(new.completed.mean()),
        "failures": failed,
        "stepwise_state_read_share_of_play": old.timings["state_read_s"]
        / old.timings["worker_play_s"],
        "replay_share_of_play": new.timings["replay_s"] / new.timings["worker_play_s"],
        "cpus": cpus_n,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "other_processes_cpu_share": others,
    }
    if args.bf16:
        bf16 = results["replay-bf16"]
        per_level = [list(zip(*outcomes(r), strict=True)) for r in (new, bf16)]
        differ = sum(a != b for a, b in zip(*per_level, strict=True))
        summary["bf16_speedup_vs_stepwise"] = best["replay-bf16"] / best["stepwise"]
        summary["bf16_vs_fp32"] = best["replay-bf16"] / best["replay"]
        summary["bf16_levels_differing"] = differ
        print(
            f"replay bf16: {summary['bf16_vs_fp32']:.2f}x replay fp32; outcome differs on "
            f"{differ} of {args.levels} levels"
        )
    print(
        f"load: average {load_before:.2f} before, {summary['load_average_after']:.2f} after; "
        f"other processes used {others:.0%} of the {cpus_n} CPUs"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
