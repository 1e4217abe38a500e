"""Integrated gradients from layer 2b of the interpretable CNN: ours (fp32 and bf16) vs
captum's ``LayerIntegratedGradients``, measured side by side in one run.

- ours: ``interpret.attribution.HiddenLayerIntegratedGradients``: the lower layers run
  once per observation, and the upper part only (``Inspectable.split("2b")``) is integrated, all 10
  steps (alpha = 0.1, ..., 1, captum's ``riemann_right`` rule) in one batched pass.
- ours bf16: the same with ``precision="bf16"`` (the network under bfloat16 autocast, the
  path, gradients and sums in float32): its completeness error and its largest difference to
  the fp32 attributions are reported. bfloat16 is fast only on CPUs with native bfloat16
  instructions (AVX512-BF16, AMX); elsewhere torch emulates it and it is slower.
- captum: ``LayerIntegratedGradients`` on the layer module over the whole network (it runs the
  whole network for every step, replacing the layer's output by the scaled activations), same
  10 steps (``method="riemann_right"``), from the all-zero observation as its baseline.

LayerIntegratedGradients takes its baseline in input space, so its layer baseline is
A(zero observation); ours is given that same layer baseline here, so both compute the same
attribution (the interface's default baseline is zero activations; the cost is identical).
Same model (a freshly built interpretable-CNN PPO policy), same CoinRun observations (random
play), same batch size, same torch threads, and both with the malloc setting that
``python -m interpret`` applies (``agents.runtime.keep_freed_memory``). Timing: both sides in
one process after a warm-up, alternating, ``--rounds`` times; each side's fastest round
counts (the least disturbed by other processes); throughput per CPU-second is reported too.
Peak memory: each side once more in its own fresh child process: its peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before) above its resident size just
before attributing (torch's CPU tensors are invisible to tracemalloc). Also: NMF
(scikit-learn, k = 8, the library's default row cap) on the attributions of 4,096
observations. The last line of stdout is a JSON summary.

    python bench/attribution.py            # 256 observations timed, NMF on 4,096 (~5 min idle)
    python bench/attribution.py --quick    # 128 observations, NMF on 512 (< 1 min idle)
"""

from __future__ import annotations

from envs import _quiet  # noqa: F401  (first: silences old gym's banner)

# isort: split
import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from agents.runtime import keep_freed_memory

LAYER, STEPS, SEED = "2b", 10, 0
SIDES = ("captum", "ours", "ours-bf16")


def build_view():
    """A freshly built interpretable-CNN PPO policy (random weights, seeded)."""
    import envs
    from agents.algorithms import PPO
    from agents.inspectable import Inspectable
    from agents.policies import HWCActorCriticPolicy

    torch.manual_seed(SEED)
    venv = envs.make_vec_env("procgen:coinrun", 1, SEED, distribution_mode="easy")
    model = PPO(
        HWCActorCriticPolicy, venv, policy_kwargs={"arch": "interpretable"}, n_steps=8, seed=SEED
    )
    view = Inspectable.from_model(model)
    venv.close()
    return view


def coinrun_observations(n: int) -> np.ndarray:
    """(n, 64, 64, 3) uint8 CoinRun observations from random play (8 envs)."""
    import envs

    venv = envs.make_vec_env("procgen:coinrun", 8, SEED, distribution_mode="easy")
    rng = np.random.default_rng(SEED)
    frames = [venv.reset()]
    while sum(len(f) for f in frames) < n:
        frames.append(venv.step(rng.integers(15, size=8))[0])
    venv.close()
    return np.concatenate(frames)[:n]


def _rss() -> int:
    return psutil.Process().memory_info().rss


def make_sides(view, batch: int) -> dict:
    """{side: fn} for `SIDES`: raw observations -> (N, 32, 32, 32) attributions (captum) or
    ``LayerAttribution`` (ours)."""
    from captum.attr import LayerIntegratedGradients

    from interpret.attribution.integrated_gradients import HiddenLayerIntegratedGradients

    ours = HiddenLayerIntegratedGradients(view, LAYER, "value", n_steps=STEPS)
    ours_bf16 = HiddenLayerIntegratedGradients(view, LAYER, "value", STEPS, precision="bf16")
    zero_obs = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        layer_baseline = ours.lower(view.preprocess(zero_obs)).float()

    def run_ours(obs: np.ndarray):
        return ours.attribute(obs, batch_size=batch, baseline=layer_baseline)

    def run_ours_bf16(obs: np.ndarray):  # the same baseline, computed in fp32
        return ours_bf16.attribute(obs, batch_size=batch, baseline=layer_baseline)

    lig = LayerIntegratedGradients(lambda x: view.outputs(x)["value"], view.layer_module(LAYER))

    def run_captum(obs: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(obs), batch):
            x = view.preprocess(obs[start : start + batch]).float()
            attr = lig.attribute(
                x, baselines=torch.zeros_like(x), n_steps=STEPS, method="riemann_right"
            )
            parts.append(attr.detach().numpy())
        return np.concatenate(parts)

    return {"captum": run_captum, "ours": run_ours, "ours-bf16": run_ours_bf16}


def timing(observations: np.ndarray, batch: int, rounds: int) -> tuple[dict, dict]:
    """Every side in this process, alternating, ``rounds`` times; the fastest round of each
    (the least disturbed by other processes). Returns ({side: stats}, {side: result})."""
    fns = make_sides(build_view(), batch)
    for fn in fns.values():
        fn(observations[:batch])  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in fns}
    cpus: dict[str, list[float]] = {name: [] for name in fns}
    outputs = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            cpu0, clock = time.process_time(), time.perf_counter()
            outputs[name] = fn(observations)
            walls[name].append(time.perf_counter() - clock)
            cpus[name].append(time.process_time() - cpu0)
    stats = {
        name: {
            "obs_per_s": len(observations) / min(walls[name]),
            "obs_per_cpu_s": len(observations) / min(cpus[name]),
            "walls_s": [round(w, 3) for w in walls[name]],
        }
        for name in fns
    }
    return stats, outputs


def _peak_child(name: str, obs_path: str, batch: int, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    keep_freed_memory()
    observations = np.load(obs_path)
    fn = make_sides(build_view(), batch)[name]
    _reset_peak()
    rss_before = _rss()
    fn(observations)
    queue.put((_peak_rss() - rss_before) / 2**20)


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0), so the
    peak measured next is that of the attribution, not of the setup before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(name: str, obs_path: str, batch: int, threads: int) -> float:
    """MiB of peak resident memory above the resident size before attributing, in a fresh
    child process (one run over all observations)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_peak_child, args=(name, obs_path, batch, threads, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def nmf_timing(n: int, threads: int) -> dict:
    from interpret.attribution.integrated_gradients import HiddenLayerIntegratedGradients
    from interpret.attribution.nmf import fit_nmf

    torch.set_num_threads(threads)
    view = build_view()
    attributions = (
        HiddenLayerIntegratedGradients(view, LAYER).attribute(coinrun_observations(n)).attributions
    )
    clock = time.perf_counter()
    features = fit_nmf(attributions, LAYER, 8)
    seconds = time.perf_counter() - clock
    return {"observations": n, "seconds": seconds, "error": features.reconstruction_error}


def machine_busy_seconds() -> float:
    with open("/proc/stat") as f:  # cpu user nice system idle iowait irq softirq steal
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def relative(x: np.ndarray, reference: np.ndarray) -> float:
    """max |x - reference| / max |reference|."""
    return float(np.abs(x - reference).max() / max(np.abs(reference).max(), 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--observations", type=int, help="timed observations per side")
    parser.add_argument("--nmf-observations", type=int)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, help="timed rounds per side (default 3, quick 2)")
    args = parser.parse_args()
    n = args.observations or (128 if args.quick else 256)
    n_nmf = args.nmf_observations or (512 if args.quick else 4096)
    args.rounds = args.rounds or (2 if args.quick else 3)

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    load_before = os.getloadavg()[0]
    busy, wall, cpu = machine_busy_seconds(), time.perf_counter(), time.process_time()
    observations = coinrun_observations(n)
    stats, outputs = timing(observations, args.batch_size, args.rounds)
    others = (machine_busy_seconds() - busy) - (time.process_time() - cpu)
    others_share = max(0.0, others) / ((time.perf_counter() - wall) * (os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        obs_path = str(Path(tmp) / "obs.npy")
        np.save(obs_path, observations)
        for name in stats:
            stats[name]["peak_mib"] = peak_memory(name, obs_path, args.batch_size, args.threads)
    for name, r in stats.items():
        print(
            f"{name:9s} {r['obs_per_s']:8.1f} obs/s  {r['obs_per_cpu_s']:8.1f} obs/cpu-s  "
            f"peak +{r['peak_mib']:7.1f} MiB  rounds {r['walls_s']} s",
            flush=True,
        )
    ours, bf16, theirs = outputs["ours"], outputs["ours-bf16"], outputs["captum"]
    scale = float(np.abs(theirs).max())
    max_diff = float(np.abs(ours.attributions - theirs).max())
    speedup = stats["ours"]["obs_per_s"] / stats["captum"]["obs_per_s"]
    speedup_cpu = stats["ours"]["obs_per_cpu_s"] / stats["captum"]["obs_per_cpu_s"]
    bf16_speedup = stats["ours-bf16"]["obs_per_s"] / stats["captum"]["obs_per_s"]
    bf16_vs_fp32 = stats["ours-bf16"]["obs_per_s"] / stats["ours"]["obs_per_s"]
    bf16_diff = relative(bf16.attributions, ours.attributions)
    bf16_l2 = float(
        np.linalg.norm(bf16.attributions - ours.attributions) / np.linalg.norm(ours.attributions)
    )
    print(f"ours / captum: {speedup:.2f}x wall, {speedup_cpu:.2f}x CPU time")
    print(f"ours bf16 / captum: {bf16_speedup:.2f}x wall; bf16 / fp32: {bf16_vs_fp32:.2f}x")
    print(f"max |ours - captum| = {max_diff:.3g} ({max_diff / scale:.3g} of the attribution scale)")
    print(
        f"completeness error / max |F(a) - F(b)|: fp32 {ours.max_relative_error:.3g}, "
        f"bf16 {bf16.max_relative_error:.3g}; max |bf16 - fp32| = {bf16_diff:.3g} of the scale, "
        f"|bf16 - fp32| / |fp32| = {bf16_l2:.3g} (L2 over all)"
    )
    print(
        f"load: average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; other "
        f"processes used {others_share:.0%} of the {os.cpu_count()} CPUs during the timing"
    )
    nmf = nmf_timing(n_nmf, args.threads)
    print(f"NMF k=8 on {n_nmf} observations: {nmf['seconds']:.1f} s", flush=True)
    summary = {
        "layer": LAYER,
        "steps": STEPS,
        "observations": n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "ours_obs_per_s": stats["ours"]["obs_per_s"],
        "ours_bf16_obs_per_s": stats["ours-bf16"]["obs_per_s"],
        "captum_obs_per_s": stats["captum"]["obs_per_s"],
        "speedup": speedup,
        "speedup_cpu_time": speedup_cpu,
        "speedup_bf16": bf16_speedup,
        "bf16_vs_fp32": bf16_vs_fp32,
        "ours_peak_mib": stats["ours"]["peak_mib"],
        "ours_bf16_peak_mib": stats["ours-bf16"]["peak_mib"],
        "captum_peak_mib": stats["captum"]["peak_mib"],
        "max_abs_diff": max_diff,
        "max_abs_diff_relative": max_diff / scale,
        "attribution_scale": scale,
        "completeness_relative_fp32": ours.max_relative_error,
        "completeness_relative_bf16": bf16.max_relative_error,
        "bf16_vs_fp32_max_diff_relative": bf16_diff,
        "bf16_vs_fp32_l2_relative": bf16_l2,
        "nmf_observations": n_nmf,
        "nmf_seconds": nmf["seconds"],
        "nmf_relative_error": nmf["error"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "other_processes_cpu_share": others_share,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
