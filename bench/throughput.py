"""Throughput on Procgen CoinRun: our HWC PPO stack vs plain SB3, measured side by side.

Both stacks train PPO with the Procgen paper's settings (``agents.presets.PROCGEN_PPO``), the
same seeds, torch threads and device (cpu), for each architecture asked for:

- ours: ``envs.make_vec_env`` + ``agents.training.make_training_env``/``build_model``. Frames stay
  HWC uint8 up to the network, which permutes and scales them itself (channels-last convs);
  no ``VecTransposeImage``; rollouts run under ``torch.inference_mode``.
- baseline: what SB3's docs lead to: a minimal hand-written ``VecEnv`` over ``ProcgenGym3Env``,
  ``VecMonitor``, ``VecNormalize(norm_obs=False)`` and ``PPO("CnnPolicy")``. SB3 then adds
  ``VecTransposeImage`` (a copy + transpose of every observation batch on the CPU), converts and
  divides by 255 in ``preprocess_obs`` and runs rollouts under ``no_grad`` (autograd's
  version-counter and view tracking stay on). Same layers and parameter count (asserted).

Reported: env-only steps/s (64 envs, random actions) through each adapter; PPO training steps/s
(env steps per wall-clock second over whole collect+update iterations, timed after a warm-up
forward/backward pass). Each stack trains in its own child process, because part of ours is a
process-wide setting (``agents.runtime.keep_freed_memory``, which ``train()`` applies); two
rounds in reversed order (baseline, ours; ours, baseline), plus an ablation: ours without that
setting (``--quick``: one round). Also reported: the share of time spent inside the innermost
procgen vec env. The last line of stdout is a JSON summary;
every ours/baseline ratio in it is measured here. On a 2-core machine other processes distort
timings badly (OpenMP threads wait on descheduled peers), so their CPU share is reported too.

    python bench/throughput.py                 # 64 envs x 256 steps (~15 min on 2 idle cores)
    python bench/throughput.py --quick         # 16 envs x 64 steps (< 2 min)
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import stable_baselines3 as sb3
import torch
from gymnasium import spaces
from procgen import ProcgenGym3Env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
from torch import nn

from agents.architectures import interpretable_stages
from agents.presets import PROCGEN_PPO
from agents.runtime import keep_freed_memory
from agents.training import TrainConfig, build_model, make_training_env
from envs import make_vec_env

ENV_ID, GAME, ENV_KWARGS, SEED = "procgen:coinrun", "coinrun", {"distribution_mode": "easy"}, 0
ENV_BENCH_ENVS = 64
# Timed collect+update iterations per arch. One 64x256 iteration of the interpretable CNN takes
# minutes on 2 CPU cores (its 7x7 and 5x5 convs run at full and half resolution).
ITERATIONS = {"nature": 3, "interpretable": 1}  # per child process; two rounds of each
QUICK_ITERATIONS = {"nature": 3, "interpretable": 1}


class BaselineProcgenVecEnv(VecEnv):
    """Minimal ProcgenGym3Env -> SB3 VecEnv adapter: obs uint8 (n, 64, 64, 3), Discrete(15)."""

    def __init__(self, n_envs: int, seed: int) -> None:
        self.env = ProcgenGym3Env(num=n_envs, env_name=GAME, rand_seed=seed, **ENV_KWARGS)
        self.render_mode = None
        obs_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
        super().__init__(n_envs, obs_space, spaces.Discrete(15))
        self.actions = np.zeros(n_envs, np.int32)

    def reset(self) -> np.ndarray:  # procgen restarts finished episodes by itself
        return self.env.observe()[1]["rgb"]

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions, dtype=np.int32).reshape(self.num_envs)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        self.env.act(self.actions)
        rew, obs, first = self.env.observe()
        return obs["rgb"], rew.astype(np.float32), first.astype(bool), self.env.get_info()

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self, name)(*args, **kwargs)] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


class CHWInterpretable(BaseFeaturesExtractor):
    """``agents.architectures``' interpretable trunk over SB3's (N, C, H, W) floats in [0, 1]."""

    def __init__(self, observation_space: spaces.Box) -> None:
        stages = interpretable_stages(tuple(observation_space.shape))
        super().__init__(observation_space, stages["fc2"].linear.out_features)
        self.net = nn.Sequential(stages)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class EnvTimer(VecEnvWrapper):
    """Adds up the wall-clock seconds spent in the wrapped vec env's reset/step calls."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.seconds += time.perf_counter() - start
        return out

    def reset(self) -> Any:
        return self._timed(self.venv.reset)

    def step_async(self, actions: np.ndarray) -> None:
        self._timed(self.venv.step_async, actions)

    def step_wait(self) -> Any:
        return self._timed(self.venv.step_wait)


def time_innermost(venv: VecEnvWrapper) -> EnvTimer:
    """Put an ``EnvTimer`` directly around the innermost (procgen) vec env of a wrapper chain."""
    outer = venv
    while isinstance(outer.venv, VecEnvWrapper):
        outer = outer.venv
    outer.venv = timer = EnvTimer(outer.venv)
    return timer


class IterationClock(BaseCallback):
    """Adds up, over timed ``learn`` calls, wall and env seconds from each rollout's start to
    the end of the update (``stop``), and the seconds spent collecting rollouts."""

    def __init__(self, timer: EnvTimer) -> None:
        super().__init__()
        self.timer = timer
        self.start = self.env_start = self.wall = self.env = self.rollout = 0.0
        self.iterations: list[float] = []

    def _on_rollout_start(self) -> None:
        self.start, self.env_start = time.perf_counter(), self.timer.seconds

    def _on_rollout_end(self) -> None:
        self.rollout += time.perf_counter() - self.start

    def _on_step(self) -> bool:
        return True

    def stop(self) -> None:
        self.iterations.append(time.perf_counter() - self.start)
        self.wall += self.iterations[-1]
        self.env += self.timer.seconds - self.env_start


def build(
    stack: str, arch: str, hp: dict[str, Any], steps: int, precision: str = "fp32"
) -> tuple[Any, EnvTimer]:
    """A PPO model (ours or baseline) with an env timer around its procgen vec env."""
    if stack == "ours":
        config = TrainConfig(
            algo="ppo", env_id=ENV_ID, arch=arch, timesteps=steps, seed=SEED, preset="procgen-ppo",
            env_kwargs=dict(ENV_KWARGS), hyperparams=hp, device="cpu", precision=precision,
        )  # fmt: skip
        venv = make_training_env(config)
        timer = time_innermost(venv)
        return build_model(config, venv), timer
    timer = EnvTimer(BaselineProcgenVecEnv(hp["n_envs"], SEED))
    venv = VecNormalize(VecMonitor(timer), norm_obs=False, norm_reward=True, gamma=hp["gamma"])
    kwargs = {k: v for k, v in hp.items() if k not in ("n_envs", "normalize_reward")}
    policy_kwargs = None if arch == "nature" else {"features_extractor_class": CHWInterpretable}
    if arch not in ("nature", "interpretable"):
        raise ValueError(f"no baseline for arch {arch!r}; use nature or interpretable")
    if policy_kwargs is not None:
        policy_kwargs["net_arch"] = []
    model = sb3.PPO(
        "CnnPolicy", venv, policy_kwargs=policy_kwargs, seed=SEED, device="cpu", **kwargs
    )
    return model, timer


def warm_up(model: sb3.PPO) -> None:
    """A rollout-sized forward and a minibatch forward+backward on random frames, so kernels
    are picked and memory allocated before the clock starts. Weights are left unchanged."""
    policy, space = model.policy, model.observation_space

    def frames(n: int) -> torch.Tensor:
        return policy.obs_to_tensor(np.stack([space.sample() for _ in range(n)]))[0]

    with torch.no_grad():
        policy(frames(model.n_envs))
    actions = torch.zeros(model.batch_size, dtype=torch.long)
    values, log_prob, entropy = policy.evaluate_actions(frames(model.batch_size), actions)
    (values.sum() + log_prob.sum() + entropy.sum()).backward()
    policy.optimizer.zero_grad()


STACKS = ("baseline", "ours", "ours_default_malloc", "ours_bf16")


def child_main(stack: str, arch: str, hp: dict[str, Any], iterations: int) -> None:
    """Run in a fresh process: build one stack, warm up, time ``iterations`` collect+update
    iterations, print one JSON line. Ours applies ``keep_freed_memory`` as ``train()`` does;
    ``ours_default_malloc`` is ours without it (an ablation); ``ours_bf16`` is ours with bf16
    autocast in the trunk (``--precision bf16``)."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if stack in ("ours", "ours_bf16"):
        keep_freed_memory()
    per_iter = hp["n_envs"] * hp["n_steps"]
    precision = "bf16" if stack == "ours_bf16" else "fp32"
    model, timer = build(
        "baseline" if stack == "baseline" else "ours", arch, hp, per_iter, precision
    )
    warm_up(model)
    clock = IterationClock(timer)
    for _ in range(iterations):
        model.learn(per_iter, callback=clock, reset_num_timesteps=False)
        clock.stop()
    model.get_env().close()
    params = sum(p.numel() for p in model.policy.parameters())
    print(
        json.dumps(
            {
                "steps": iterations * per_iter,
                "wall": clock.wall,
                "env": clock.env,
                "rollout": clock.rollout,
                "params": params,
                "iteration_s": clock.iterations,
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(stack: str, arch: str, hp: dict[str, Any], iterations: int) -> dict[str, Any]:
    """``child_main`` in a subprocess (process-wide settings such as malloc's stay apart)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        stack,
        arch,
        "--hp",
        json.dumps(hp),
        "--iterations",
        str(iterations),
    ]
    env = {**os.environ, "BENCH_THREADS": str(torch.get_num_threads())}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{stack}/{arch} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_rates(
    arch: str, hp: dict[str, Any], iterations: int, rounds: int = 2
) -> dict[str, dict[str, Any]]:
    """Training steps/s of each stack: ``rounds`` rounds of one child process per stack, the
    order reversed every round (baseline, ours; ours, baseline; ...) so that changes in machine
    load hit both alike; the ablation runs once at the end."""
    totals: dict[str, dict[str, Any]] = {}
    schedule = [("baseline", "ours") if r % 2 == 0 else ("ours", "baseline") for r in range(rounds)]
    extra = ["ours_default_malloc", "ours_bf16", "ours"]
    for stack in [s for pair in schedule for s in pair] + extra:
        r = run_child(stack, arch, hp, iterations)
        t = totals.setdefault(
            stack,
            {
                "steps": 0,
                "wall": 0.0,
                "env": 0.0,
                "rollout": 0.0,
                "params": r["params"],
                "iteration_s": [],
                "peak_rss_mib": 0.0,
            },
        )
        t["peak_rss_mib"] = max(t["peak_rss_mib"], r["peak_rss_mib"])
        for key in ("steps", "wall", "env", "rollout"):
            t[key] += r[key]
        t["iteration_s"] += [round(x, 1) for x in r["iteration_s"]]
    return {
        stack: {
            "steps_per_s": t["steps"] / t["wall"],
            "env_share": t["env"] / t["wall"],
            "rollout_share": t["rollout"] / t["wall"],
            "params": t["params"],
            "iteration_s": t["iteration_s"],
            "peak_rss_mib": t["peak_rss_mib"],
        }
        for stack, t in totals.items()
    }


def env_rate(make: Callable[[], VecEnv], steps: int) -> float:
    """Steps/s of a vec env under random actions (after ``steps // 10`` warm-up steps)."""
    venv = make()
    venv.reset()
    rng = np.random.default_rng(SEED)
    actions = rng.integers(0, 15, size=(steps + steps // 10, venv.num_envs))
    for act in actions[: steps // 10]:
        venv.step(act)
    start = time.perf_counter()
    for act in actions[steps // 10 :]:
        venv.step(act)
    rate = steps * venv.num_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (Linux /proc/stat) and by this process."""
    with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in f.readline().split()[1:9]]
    own = os.times()
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf(
        "SC_CLK_TCK"
    ), own.user + own.system + own.children_user + own.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 envs x 64 steps, < 2 minutes")
    parser.add_argument("--archs", nargs="+", default=["nature", "interpretable"])
    parser.add_argument(
        "--iterations", type=int, help=f"timed iterations per arch (default: {ITERATIONS})"
    )
    parser.add_argument("--child", nargs=2, metavar=("STACK", "ARCH"), help=argparse.SUPPRESS)
    parser.add_argument("--hp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], args.child[1], json.loads(args.hp), args.iterations)
        return
    wall, (busy, own) = time.perf_counter(), cpu_seconds()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads or 1)
    hp = {**PROCGEN_PPO}
    if args.quick:
        hp.update(n_envs=16, n_steps=64, batch_size=256)
    env_steps = 100 if args.quick else 400
    summary: dict[str, Any] = {"quick": args.quick, "torch_threads": torch.get_num_threads()}

    makers = {
        "ours": lambda: make_vec_env(ENV_ID, ENV_BENCH_ENVS, SEED, **ENV_KWARGS),
        "baseline": lambda: BaselineProcgenVecEnv(ENV_BENCH_ENVS, SEED),
    }
    times = {"ours": 0.0, "baseline": 0.0}
    for order in (("baseline", "ours"), ("ours", "baseline")):  # alternate who goes first
        for stack in order:
            times[stack] += ENV_BENCH_ENVS * env_steps / env_rate(makers[stack], env_steps)
    for stack in times:
        summary[f"env_steps_per_s_{stack}"] = 2 * ENV_BENCH_ENVS * env_steps / times[stack]
    summary["env_ratio"] = summary["env_steps_per_s_ours"] / summary["env_steps_per_s_baseline"]
    print(
        f"env only ({ENV_BENCH_ENVS} envs, random actions): "
        f"ours {summary['env_steps_per_s_ours']:.0f} steps/s, "
        f"baseline {summary['env_steps_per_s_baseline']:.0f} steps/s, "
        f"ratio {summary['env_ratio']:.2f}",
        flush=True,
    )

    for arch in args.archs:
        iterations = args.iterations or (QUICK_ITERATIONS if args.quick else ITERATIONS)[arch]
        result = train_rates(arch, hp, iterations, rounds=1 if args.quick else 2)
        assert len({r["params"] for r in result.values()}) == 1, (arch, result)
        for stack, r in result.items():
            summary[f"train_steps_per_s_{stack}_{arch}"] = r["steps_per_s"]
            summary[f"env_time_share_{stack}_{arch}"] = r["env_share"]
            summary[f"rollout_time_share_{stack}_{arch}"] = r["rollout_share"]
        ratio = result["ours"]["steps_per_s"] / result["baseline"]["steps_per_s"]
        summary[f"train_{arch}_ratio"] = ratio
        malloc_gain = result["ours"]["steps_per_s"] / result["ours_default_malloc"]["steps_per_s"]
        summary[f"train_{arch}_keep_freed_memory_ratio"] = malloc_gain
        bf16_gain = result["ours_bf16"]["steps_per_s"] / result["ours"]["steps_per_s"]
        summary[f"train_{arch}_bf16_over_fp32_ratio"] = bf16_gain
        for stack, r in result.items():
            summary[f"peak_rss_mib_{stack}_{arch}"] = round(r["peak_rss_mib"])
        summary[f"params_{arch}"] = result["ours"]["params"]
        summary[f"iterations_per_child_{arch}"] = iterations
        line = ", ".join(
            f"{s} {r['steps_per_s']:.0f} steps/s (env {r['env_share']:.0%}, "
            f"rollout {r['rollout_share']:.0%} of time; iterations {r['iteration_s']} s; "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB)"
            for s, r in result.items()
        )
        print(f"train {arch} ({result['ours']['params']} params): {line}")
        print(
            f"  ratio ours/baseline {ratio:.2f}; ours with/without keep_freed_memory "
            f"{malloc_gain:.2f}; ours bf16/fp32 {bf16_gain:.2f}",
            flush=True,
        )

    config_keys = ("n_envs", "n_steps", "batch_size", "n_epochs")
    summary.update({k: hp[k] for k in config_keys}, env_id=ENV_ID)
    summary.update(env_bench_envs=ENV_BENCH_ENVS, env_bench_steps=env_steps, device="cpu")
    summary["wall_s"] = wall = time.perf_counter() - wall
    busy_end, own_end = cpu_seconds()
    other = ((busy_end - busy) - (own_end - own)) / (wall * os.cpu_count())
    summary["other_processes_cpu_share"] = other
    print(f"wall time {wall:.0f} s; other processes used {other:.0%} of the CPU meanwhile")
    if other > 0.1:
        print("warning: the machine was not idle, so timings are noisy; rerun when it is")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}))


if __name__ == "__main__":
    main()
