"""World Models parallelism, measured side by side in one run on ``box2d:CarRacing-v3``:

1. rollout collection (random "brownian" policy, frames stored as in the pipeline): frames/s
   with a 1-process pool vs a 2-process pool (``LocalExecutor``), same episodes and seeds;
2. one CMA-ES generation of the controller (population x rollouts episodes of V + M + C on the
   real game): seconds in this process (``SerialExecutor``) vs in a 2-process pool.
Pools are started and warmed up (modules imported, models loaded) before timing; V and M are
freshly initialised (speed does not depend on training). Each measurement is repeated in
alternating order (``--rounds``) and the best kept. Prints one line per measurement and, last,
a JSON summary with the ratios and ``other_processes_cpu_share`` (CPU used by other processes
meanwhile, as a share of the machine; above ~0.1 the numbers are noise).

    python bench/world_model_pipeline.py --quick     # ~2-3 minutes on 2 idle cores
    python bench/world_model_pipeline.py             # ~10 minutes
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from agents.executor import Executor, LocalExecutor, SerialExecutor
from world_model.cmaes import EpisodeTask, _cached_model, evaluate_candidates, play_controller
from world_model.model import WorldModel, save_weights
from world_model.rollouts import collect
from world_model.run import WorldModelConfig, create_run

ENV_ID = "box2d:CarRacing-v3"


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (/proc/stat) and by this process tree."""
    with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in f.readline().split()[1:9]]
    own = os.times()
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return busy, own.user + own.system + own.children_user + own.children_system


def warm_up(_: int) -> int:
    """Import what a task needs (run in every worker before timing)."""
    import world_model.cmaes
    import world_model.rollouts  # noqa: F401

    return os.getpid()


def make_run(directory: Path) -> Path:
    """A CarRacing run directory with freshly initialised V and M."""
    run = directory / "run"
    config = create_run(WorldModelConfig(env_id=ENV_ID), run)
    torch.manual_seed(0)
    model = WorldModel.from_config(asdict(config))
    save_weights(model.vae, run / "vae.safetensors")
    save_weights(model.mdn, run / "mdn.safetensors")
    (run / "series").mkdir()
    np.save(run / "series" / "initial_z.npy", np.zeros((1, 32), np.float32))
    return run


def time_rollouts(executor: Executor, out: Path, episodes: int, steps: int, seed: int) -> float:
    """Frames per second collecting ``episodes`` episodes into a fresh directory."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    results = collect(executor, ENV_ID, out, episodes, steps, seed, "brownian")
    return sum(r["steps"] for r in results) / (time.perf_counter() - started)


def time_generation(
    executor: Executor, run: Path, population: int, rollouts: int, steps: int, seed: int
) -> float:
    """Seconds for one CMA-ES generation's evaluations (population x rollouts episodes)."""
    rng = np.random.default_rng(seed)
    candidates = [rng.normal(0, 0.1, (32 + 256) * 3 + 3) for _ in range(population)]
    seeds = [seed + i for i in range(rollouts)]
    started = time.perf_counter()
    evaluate_candidates(
        executor, candidates, seeds, lambda c, s: EpisodeTask(str(run), c, s, steps)
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, help="alternating repetitions (default 1 / 2)")
    args = parser.parse_args()
    episodes, steps = (4, 100) if args.quick else (8, 300)
    population, rollouts, c_steps = (4, 1, 100) if args.quick else (8, 2, 300)
    rounds = args.rounds or (1 if args.quick else 2)
    torch.set_num_threads(1)  # the serial side runs like one worker
    wall, (busy, own) = time.perf_counter(), cpu_seconds()
    summary: dict[str, object] = {"env_id": ENV_ID, "cpus": os.cpu_count(), "rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = make_run(tmp)
        _cached_model(str(run))  # the serial side's model load, outside the timing
        play_controller(EpisodeTask(str(run), np.zeros(867), 0, 5))
        pools = {1: LocalExecutor(1), 2: LocalExecutor(2)}
        serial = SerialExecutor()
        for pool in pools.values():
            pool.map(warm_up, range(4))
            evaluate_candidates(  # loads V and M in every worker
                pool, [np.zeros(867)] * 4, [0], lambda c, s: EpisodeTask(str(run), c, s, 5)
            )
        fps = {1: [], 2: []}
        gen = {"serial": [], "parallel": []}
        for r in range(rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for workers in order:
                fps[workers].append(
                    time_rollouts(pools[workers], tmp / f"ro{workers}", episodes, steps, r)
                )
                print(f"rollouts, {workers} worker(s): {fps[workers][-1]:.1f} frames/s", flush=True)
            for side in ("serial", "parallel") if r % 2 == 0 else ("parallel", "serial"):
                executor = serial if side == "serial" else pools[2]
                gen[side].append(time_generation(executor, run, population, rollouts, c_steps, r))
                print(f"CMA-ES generation, {side}: {gen[side][-1]:.1f} s", flush=True)
        for pool in pools.values():
            pool.close()
    best_fps = {w: max(v) for w, v in fps.items()}
    best_gen = {s: min(v) for s, v in gen.items()}
    summary.update(
        rollout_episodes=episodes,
        rollout_steps=steps,
        rollout_frames_per_s_1_worker=round(best_fps[1], 1),
        rollout_frames_per_s_2_workers=round(best_fps[2], 1),
        rollout_2_vs_1_worker_ratio=round(best_fps[2] / best_fps[1], 2),
        cmaes_population=population,
        cmaes_rollouts_per_candidate=rollouts,
        cmaes_episode_steps=c_steps,
        cmaes_generation_s_serial=round(best_gen["serial"], 1),
        cmaes_generation_s_parallel_2_workers=round(best_gen["parallel"], 1),
        cmaes_serial_vs_parallel_ratio=round(best_gen["serial"] / best_gen["parallel"], 2),
    )
    summary["wall_s"] = wall = round(time.perf_counter() - wall, 1)
    busy_end, own_end = cpu_seconds()
    other = ((busy_end - busy) - (own_end - own)) / (wall * os.cpu_count())
    summary["other_processes_cpu_share"] = round(other, 3)
    print(
        f"rollouts 2 vs 1 worker: x{summary['rollout_2_vs_1_worker_ratio']}; CMA-ES generation "
        f"serial / parallel: x{summary['cmaes_serial_vs_parallel_ratio']}; other processes used "
        f"{other:.0%} of the CPU meanwhile"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
