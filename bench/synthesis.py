"""State synthesis cost on this machine: generator training and latent optimization.

For a CoinRun PPO agent (the ``interpretable`` architecture, freshly initialized unless
``--model`` is given; speed does not depend on what it learned), on 64x64 RGB frames:

- generator training frames/s for the full loss (reconstruction + perception through the
  agent + KL) and, side by side, for the plain VAE loss (no agent in the loop): their ratio is
  what the perception term costs;
- latent-optimization samples/s (Adam steps x samples per second through generator + agent)
  and, side by side, the pixel-space baseline's samples/s: their ratio is what the generator
  adds to each step.

Frames are real CoinRun frames recorded by the agent (epsilon 0.1). Each phase runs in its own
child process so that its peak resident memory (``ru_maxrss``) is its own. Torch threads:
``--threads`` (1 by default: the machine is shared). The last line of stdout is a JSON summary.

    python bench/synthesis.py            # 512 frames x 2 epochs, 16 samples x 50 steps
    python bench/synthesis.py --quick    # 128 frames x 1 epoch, 8 samples x 10 steps
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
import warnings
from pathlib import Path

import torch

ENV_ID, OPTIONS = "procgen:coinrun", {"distribution_mode": "easy"}


def _view(model: str | None):
    import agents
    import envs
    from agents.algorithms import PPO
    from agents.inspectable import Inspectable
    from agents.policies import HWCActorCriticPolicy

    if model:
        return agents.load(model)
    venv = envs.make_vec_env(ENV_ID, 1, 0, **OPTIONS)
    ppo = PPO(HWCActorCriticPolicy, venv, policy_kwargs={"arch": "interpretable"}, seed=0)
    return Inspectable.from_model(ppo)


def _data(view, space, n_frames: int):
    from interpret.synthesis.frames import FrameSet, record_frames
    from interpret.synthesis.saliency import saliency_maps
    from interpret.synthesis.training import agent_features

    frames = record_frames(view, ENV_ID, space, n_frames=n_frames, epsilon=0.1, **OPTIONS)
    return FrameSet(
        frames, saliency_maps(view, space, frames), agent_features(view, space, frames), {}
    )


def child(phase: str, args: argparse.Namespace) -> dict:
    from interpret.synthesis.frames import frame_space
    from interpret.synthesis.generator import Generator, GeneratorConfig
    from interpret.synthesis.latent import optimize_latents
    from interpret.synthesis.pixels import maximize_pixels
    from interpret.synthesis.targets import resolve_target
    from interpret.synthesis.training import TrainSettings, train_generator

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    view = _view(args.model)
    space = frame_space(view, ENV_ID)
    target = resolve_target("T-", view)
    if phase.startswith("train"):
        data = _data(view, space, args.frames)
        settings = TrainSettings(epochs=args.epochs, batch_size=32).variant(phase.split("-")[1])
        started = time.perf_counter()
        train_generator(view, space, data, settings, progress=False)
        seconds = time.perf_counter() - started
        rate = args.frames * args.epochs / seconds
    else:
        started = time.perf_counter()
        if phase == "latent":
            torch.manual_seed(0)
            generator = Generator(GeneratorConfig(3, 64, 64))
            optimize_latents(
                generator, view, space, target, args.samples, restarts=1, steps=args.steps
            )
        else:
            maximize_pixels(view, space, target, args.samples, steps=args.steps)
        seconds = time.perf_counter() - started
        rate = args.samples * args.steps / seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"phase": phase, "seconds": seconds, "per_s": rate, "peak_rss_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", help="a CoinRun model (default: a fresh interpretable PPO)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.frames, args.epochs, args.samples, args.steps = (
        (128, 1, 8, 10) if args.quick else (512, 2, 16, 50)
    )
    if args._child:
        print(json.dumps(child(args._child, args)))
        return
    results = {}
    for phase in ("train-full", "train-vae", "latent", "pixels"):
        command = [sys.executable, str(Path(__file__).resolve()), "--_child", phase]
        command += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        command += ["--model", args.model] if args.model else []
        root = str(Path(__file__).resolve().parent.parent)  # this checkout's packages
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
        unit = "frames/s" if phase.startswith("train") else "sample-steps/s"
        r = results[phase]
        print(f"{phase:11s} {r['per_s']:9.1f} {unit:15s} peak RSS {r['peak_rss_mib']:7.0f} MiB")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    summary = {
        "bench": "synthesis",
        "quick": args.quick,
        "threads": args.threads,
        "frames": args.frames,
        "epochs": args.epochs,
        "samples": args.samples,
        "steps": args.steps,
        "generator_train_frames_per_s_full": results["train-full"]["per_s"],
        "generator_train_frames_per_s_vae": results["train-vae"]["per_s"],
        "full_over_vae_time_ratio": results["train-vae"]["per_s"] / results["train-full"]["per_s"],
        "latent_sample_steps_per_s": results["latent"]["per_s"],
        "pixel_sample_steps_per_s": results["pixels"]["per_s"],
        "latent_over_pixel_time_ratio": results["pixels"]["per_s"] / results["latent"]["per_s"],
        "peak_rss_mib": {k: v["peak_rss_mib"] for k, v in results.items()},
        "load_average_1min_at_end": load,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
