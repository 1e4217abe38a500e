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
    python bench/throughput.py --memory 2      # peak RSS of the Procgen preset's update
    python bench/throughput.py --memory 2 --stacks ours ours_micro512   # fp32, micro-batches

``--memory N``: peak resident memory (``ru_maxrss``) of ours at fp32 and at bf16, with and
without the malloc setting (``agents.runtime``), and at fp32 with micro-batches of 512
(``micro_batch_size``, gradients accumulated; ``--stacks`` picks children, e.g.
``ours ours_micro512 ours_micro256``), each in its own child, with the Procgen
preset (64 envs x 256 steps, minibatches of 2048): the rollout buffer is filled with frames of
random play (zero values and log-probabilities: the update's memory does not depend on them,
and a real collection costs minutes on a busy machine), then the first N minibatches of an
update run. Also printed: the resident size before the update and the update's seconds.

``--compile``: eager vs ``torch.compile`` (inductor) in one process, the same weights and
inputs, alternating rounds (each side's fastest counts): a PPO minibatch step of ours
(``evaluate_actions``, backward, Adam; the trunk compiled with ``nn.Module.compile``, which
keeps state-dict keys) at batch 256, and a view's ``outputs`` (``agents.inspectable``; the
function compiled) at batch 64 under ``inference_mode``. Compile time (the first call) and
the largest difference of the compiled outputs to eager's are printed too.
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import itertools
import json
import os
import re
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
from stable_baselines3.common.logger import Logger
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


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def fill_rollout_buffer(model: sb3.PPO, seed: int = SEED) -> None:
    """Fill ``model``'s rollout buffer with frames of random play; values, log-probabilities
    zero (an update's memory and cost do not depend on them)."""
    buffer, venv = model.rollout_buffer, model.get_env()
    rng = np.random.default_rng(seed)
    obs, starts = venv.reset(), np.ones(model.n_envs, dtype=bool)
    zeros = torch.zeros(model.n_envs)
    for _ in range(buffer.buffer_size):
        actions = rng.integers(0, venv.action_space.n, size=model.n_envs)
        next_obs, rewards, dones, _ = venv.step(actions)
        buffer.add(obs, actions, rewards, starts, zeros, zeros)
        obs, starts = next_obs, dones
    buffer.compute_returns_and_advantage(zeros, dones)


def memory_child(stack: str, arch: str, hp: dict[str, Any], minibatches: int) -> None:
    """Run in a fresh process: the first ``minibatches`` minibatches of one PPO update over a
    full rollout buffer; print one JSON line with the peak RSS."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    if "default_malloc" not in stack:
        keep_freed_memory()
    precision = "bf16" if "bf16" in stack else "fp32"
    micro = re.search(r"_micro(\d+)", stack)  # ours_micro512: micro_batch_size 512
    hp = {**hp, "n_epochs": 1, **({"micro_batch_size": int(micro[1])} if micro else {})}
    model, _ = build("ours", arch, hp, hp["n_envs"] * hp["n_steps"], precision)
    fill_rollout_buffer(model)
    model.set_logger(Logger(None, []))
    buffer = model.rollout_buffer
    get = buffer.get
    buffer.get = lambda batch_size=None: itertools.islice(get(batch_size), minibatches)  # type: ignore[method-assign]
    rss_before, start, cpu_start = _rss_mib(), time.perf_counter(), time.process_time()
    model.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model.get_env().close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "peak_rss_mib": peak,
                "rss_before_update_mib": rss_before,
                "update_s": seconds,
                "update_cpu_s": cpu_seconds,
            }
        )
    )


MEMORY_STACKS = (
    "ours",
    "ours_bf16",
    "ours_default_malloc",
    "ours_bf16_default_malloc",
    "ours_micro512",
)
_MEMORY_STACK = re.compile(r"ours(_bf16)?(_default_malloc)?(_micro[1-9]\d*)?")


def memory_main(
    arch: str, minibatches: int, stacks: tuple[str, ...] = MEMORY_STACKS
) -> dict[str, Any]:
    """``memory_child`` for each of ``stacks``, one after the other: ours at fp32 or bf16
    (``_bf16``), with or without the malloc setting (``_default_malloc``), with or without
    micro-batches of N (``_microN``). The load average is printed before each child; each
    stack's update speed relative to ``ours`` is measured in the child's CPU seconds."""
    hp, summary = {**PROCGEN_PPO}, {"memory_minibatches": minibatches, "arch": arch}
    cpu: dict[str, float] = {}
    for stack in stacks:
        load = os.getloadavg()
        r = run_child(stack, arch, hp, minibatches, mode="--memory")
        print(
            f"{stack}: peak RSS {r['peak_rss_mib']:.0f} MiB (before the update "
            f"{r['rss_before_update_mib']:.0f} MiB; {minibatches} minibatches of "
            f"{hp['batch_size']} in {r['update_s']:.0f} s, {r['update_cpu_s']:.0f} CPU-s; "
            f"load average at start "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f})",
            flush=True,
        )
        summary[f"load_avg_1min_at_start_{stack}"] = round(load[0], 2)
        summary.update({f"{k}_{stack}": round(v) for k, v in r.items()})
        cpu[stack] = r["update_cpu_s"]
    for stack in (s for s in stacks if s != "ours" and "ours" in cpu):
        ratio = cpu["ours"] / cpu[stack]  # CPU seconds: less disturbed by load than wall time
        print(f"update speed {stack} / ours (CPU seconds of the update): {ratio:.2f}x")
        summary[f"update_speed_{stack}_over_ours"] = round(ratio, 3)
    return summary


COMPILE_TRAIN_BATCH, COMPILE_INFER_BATCH, COMPILE_ROUNDS, COMPILE_REPS = 256, 64, 3, 2


def _best_seconds(fns: dict[str, Callable[[], Any]], rounds: int, reps: int) -> dict[str, float]:
    """Fastest of ``rounds`` alternating rounds of ``reps`` calls, per side, in seconds/call."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / reps)
    return best


def compile_main(arch: str) -> dict[str, Any]:
    """Eager vs compiled: a PPO minibatch step and a view's outputs (see the docstring)."""
    from agents.inspectable import Inspectable

    keep_freed_memory()
    hp = {**PROCGEN_PPO, "n_envs": 1, "n_steps": COMPILE_TRAIN_BATCH}
    models = {
        side: build("ours", arch, hp, COMPILE_TRAIN_BATCH)[0] for side in ("eager", "compiled")
    }
    models["compiled"].policy.load_state_dict(models["eager"].policy.state_dict())
    models["compiled"].policy.features_extractor.net.compile()
    rng = np.random.default_rng(SEED)
    frames = rng.integers(0, 256, size=(COMPILE_TRAIN_BATCH, 64, 64, 3), dtype=np.uint8)
    obs, actions = torch.as_tensor(frames), torch.as_tensor(rng.integers(0, 15, len(frames)))

    def train_step(policy: Any) -> float:
        values, log_prob, entropy = policy.evaluate_actions(obs, actions)
        loss = values.square().mean() - log_prob.mean() - 0.01 * entropy.mean()
        policy.optimizer.zero_grad()
        loss.backward()
        policy.optimizer.step()
        return float(loss.detach())

    views = {side: Inspectable.from_model(m) for side, m in models.items()}
    x = views["eager"].preprocess(frames[:COMPILE_INFER_BATCH])
    infer = {"eager": views["eager"].outputs, "compiled": torch.compile(views["compiled"].outputs)}

    def outputs(side: str) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return infer[side](x)

    summary: dict[str, Any] = {"arch": arch, "train_batch": COMPILE_TRAIN_BATCH}
    summary["infer_batch"] = COMPILE_INFER_BATCH
    losses = {}
    for side in ("eager", "compiled"):  # first calls: compilation
        start = time.perf_counter()
        losses[side] = train_step(models[side].policy)
        summary[f"first_train_step_s_{side}"] = time.perf_counter() - start
        start = time.perf_counter()
        out = outputs(side)
        summary[f"first_outputs_s_{side}"] = time.perf_counter() - start
    eager_out, compiled_out = outputs("eager"), outputs("compiled")
    summary["outputs_max_abs_diff"] = max(
        float((eager_out[k] - compiled_out[k]).abs().max()) for k in eager_out
    )
    summary["first_loss_abs_diff"] = abs(losses["eager"] - losses["compiled"])
    train = _best_seconds(
        {s: lambda s=s: train_step(models[s].policy) for s in models}, COMPILE_ROUNDS, COMPILE_REPS
    )
    infer_s = _best_seconds({s: lambda s=s: outputs(s) for s in infer}, COMPILE_ROUNDS, 10)
    for side in ("eager", "compiled"):
        summary[f"train_samples_per_s_{side}"] = COMPILE_TRAIN_BATCH / train[side]
        summary[f"outputs_obs_per_s_{side}"] = COMPILE_INFER_BATCH / infer_s[side]
    summary["train_compiled_over_eager"] = train["eager"] / train["compiled"]
    summary["outputs_compiled_over_eager"] = infer_s["eager"] / infer_s["compiled"]
    del out
    m = summary
    print(
        f"train step (batch {COMPILE_TRAIN_BATCH}): eager {m['train_samples_per_s_eager']:.0f} "
        f"samples/s, compiled {m['train_samples_per_s_compiled']:.0f} (ratio "
        f"{m['train_compiled_over_eager']:.2f}; first step {m['first_train_step_s_eager']:.0f} s "
        f"vs {m['first_train_step_s_compiled']:.0f} s)",
        flush=True,
    )
    print(
        f"outputs (batch {COMPILE_INFER_BATCH}): eager {m['outputs_obs_per_s_eager']:.0f} obs/s, "
        f"compiled {m['outputs_obs_per_s_compiled']:.0f} (ratio "
        f"{m['outputs_compiled_over_eager']:.2f}; first call {m['first_outputs_s_compiled']:.0f} "
        f"s; max |diff| {m['outputs_max_abs_diff']:.1e})",
        flush=True,
    )
    return summary


def run_child(
    stack: str, arch: str, hp: dict[str, Any], iterations: int, mode: str = "--iterations"
) -> dict[str, Any]:
    """``child_main`` (or ``memory_child`` with ``mode="--memory"``) in a subprocess
    (process-wide settings such as malloc's stay apart)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        stack,
        arch,
        "--hp",
        json.dumps(hp),
        mode,
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
    parser.add_argument(
        "--memory", type=int, metavar="N", help="peak RSS of N minibatches of a preset update"
    )
    parser.add_argument(
        "--stacks",
        nargs="+",
        default=list(MEMORY_STACKS),
        help="--memory children: ours[_bf16][_default_malloc][_microN] (default: %(default)s)",
    )
    parser.add_argument("--compile", action="store_true", help="eager vs torch.compile")
    parser.add_argument("--child", nargs=2, metavar=("STACK", "ARCH"), help=argparse.SUPPRESS)
    parser.add_argument("--hp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    bad = [s for s in args.stacks if not _MEMORY_STACK.fullmatch(s)]
    if bad:
        parser.error(f"unknown --stacks {' '.join(bad)}; ours[_bf16][_default_malloc][_microN]")
    if args.child and args.memory:
        memory_child(args.child[0], args.child[1], json.loads(args.hp), args.memory)
        return
    if args.child:
        child_main(args.child[0], args.child[1], json.loads(args.hp), args.iterations)
        return
    wall, (busy, own) = time.perf_counter(), cpu_seconds()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(os.environ.get("BENCH_THREADS") or 0) or threads  # BENCH_THREADS=1: one thread
    torch.set_num_threads(threads or 1)
    if args.memory or args.compile:
        arch = args.archs[-1]
        if args.memory:
            summary = memory_main(arch, args.memory, tuple(args.stacks))
        else:
            summary = compile_main(arch)
        summary["wall_s"] = wall = time.perf_counter() - wall
        busy_end, own_end = cpu_seconds()
        other = ((busy_end - busy) - (own_end - own)) / (wall * os.cpu_count())
        summary["other_processes_cpu_share"] = round(other, 4)
        print(f"wall time {wall:.0f} s; other processes used {other:.0%} of the CPU meanwhile")
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
        )
        return
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
