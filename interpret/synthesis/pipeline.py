"""The steps of ``python -m interpret synthesize``; frames and generators are cached by the
hash of what made them (the model file, the env, the settings):

    data, frames_key = cached_frames(view, model_path, env_id, space, options, cache, ...)
    generators, histories = cached_generators(view, space, data, base, variants, cache, ...)
    result = synthesize(view, space, data, generators["full"], target, samples, ...)
    shown = reconstructions(space, data, generators)
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.policy_view import PolicyView
from interpret.synthesis.frames import FrameSet, FrameSpace, record_frames
from interpret.synthesis.generator import Generator
from interpret.synthesis.latent import agent_outputs, optimize_latents, readout
from interpret.synthesis.novelty import nearest_frames, novelty_histogram
from interpret.synthesis.pixels import maximize_pixels
from interpret.synthesis.saliency import relu_module_count, saliency_maps
from interpret.synthesis.targets import Target
from interpret.synthesis.training import TrainSettings, agent_features, train_generator


def digest(data: Any) -> str:
    """A 16-hex-digit cache key of JSON-able ``data``."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _model_hash(path: Path) -> str:
    """A model file's hash; a World Models run directory: its config's and weights' hashes."""
    if not path.is_dir():
        return _file_hash(path)
    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    return digest({f.name: _file_hash(f) for f in files})


def cached_frames(
    view: PolicyView,
    model_path: Path,
    env_id: str,
    space: FrameSpace,
    options: dict[str, Any],
    cache: Path,
    *,
    n_frames: int,
    epsilon: float,
    seed: int,
    kernel: int,
    progress: bool,
    timings: dict[str, float],
) -> tuple[FrameSet, str]:
    """(frames recorded epsilon-greedily with their saliency and the agent's outputs, their
    cache key), from ``cache`` when recorded before by the same model and settings."""
    key = digest(
        {
            "model": _model_hash(model_path),
            "env": env_id,
            "options": options,
            "frames": n_frames,
            "epsilon": epsilon,
            "seed": seed,
            "kernel": kernel,
        }
    )
    path = cache / f"frames-{key}.npz"
    started = time.perf_counter()
    if path.exists():
        data = FrameSet.load(path)
    else:
        if relu_module_count(view) == 0:
            warnings.warn("no nn.ReLU modules: guided backprop = plain gradient", stacklevel=2)
        if progress:
            print(f"recording {n_frames} frames of {env_id} (epsilon {epsilon})")
        images = record_frames(
            view, env_id, space, n_frames=n_frames, epsilon=epsilon, seed=seed, **options
        )
        saliency = saliency_maps(view, space, images, kernel)
        outputs = agent_features(view, space, images)
        data = FrameSet(images, saliency, outputs, {"env_id": env_id, "options": options})
        data.save(path)
    timings["frames_and_saliency_s"] = time.perf_counter() - started
    return data, key


def cached_generators(
    view: PolicyView,
    space: FrameSpace,
    data: FrameSet,
    base: TrainSettings,
    variants: list[str],
    cache: Path,
    frames_key: str,
    *,
    progress: bool,
    timings: dict[str, float],
) -> tuple[dict[str, Generator], dict[str, list[dict[str, float]]]]:
    """({variant: generator}, {variant: loss history}): each trained on ``data`` with
    ``base.variant(variant)``, from ``cache`` when trained before, else resuming from its
    checkpoint after an interruption."""
    generators, histories = {}, {}
    for variant in variants:
        started = time.perf_counter()
        settings = base.variant(variant)
        key = digest({"frames": frames_key, "settings": settings.__dict__})
        path = cache / f"generator-{key}.safetensors"
        cached = path.exists()
        if cached:
            generator, meta = Generator.load(path)
            generators[variant], histories[variant] = generator.to(view.device), meta["history"]
        else:
            checkpoint = path.with_suffix(".ckpt.pt")
            generators[variant], histories[variant] = train_generator(
                view, space, data, settings, checkpoint, progress, f"training generator ({variant})"
            )
            meta = {"history": histories[variant], "settings": settings.__dict__}
            generators[variant].save(path, meta | {"variant": variant})
            checkpoint.unlink(missing_ok=True)
        timings[f"train_{variant}_s" + ("_cached" if cached else "")] = (
            time.perf_counter() - started
        )
    return generators, histories


def synthesize(
    view: PolicyView,
    space: FrameSpace,
    data: FrameSet,
    generator: Generator,
    target: Target,
    samples: int,
    *,
    restarts: int,
    steps: int,
    latent_lr: float,
    reg_weight: float,
    tv_weight: float,
    seed: int,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Latent optimization of ``samples`` states, the pixel-space baseline, the agent's outputs
    on both, their nearest recorded frames and novelty; adds their seconds to ``timings``."""
    started = time.perf_counter()
    synth = optimize_latents(
        generator,
        view,
        space,
        target,
        samples,
        restarts=restarts,
        steps=steps,
        lr=latent_lr,
        reg_weight=reg_weight,
        seed=seed,
    )
    timings["latent_optimization_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pixel_images, pixel_energy = maximize_pixels(
        view, space, target, min(samples, 8), steps=steps, tv_weight=tv_weight, seed=seed
    )
    timings["pixel_baseline_s"] = time.perf_counter() - started
    nearest, share = nearest_frames(synth.images, data.images)
    with torch.no_grad():
        synth_out = agent_outputs(view, space, torch.as_tensor(synth.images, device=view.device))
        pixel_out = agent_outputs(view, space, torch.as_tensor(pixel_images, device=view.device))
        real_energy = target({k: torch.as_tensor(v) for k, v in data.outputs.items()})
    return {
        "synth": synth,
        "synth_outputs": {k: v.cpu().numpy() for k, v in synth_out.items()},
        "synth_shown": readout(view, synth_out),
        "pixel_images": pixel_images,
        "pixel_energy": pixel_energy,
        "pixel_outputs": {k: v.cpu().numpy() for k, v in pixel_out.items()},
        "pixel_shown": readout(view, pixel_out),
        "nearest": nearest,
        "novelty_share": share,
        "summary": {
            "samples": samples,
            "energy": synth.energy.tolist(),
            "target_energy": synth.target.tolist(),
            "start_energy_mean": float(synth.start_energy.mean()),
            "recorded_frames_target_energy": {
                "mean": float(real_energy.mean()),
                "min": float(real_energy.min()),
            },
            "pixel_baseline_target_energy": pixel_energy.tolist(),
            "novelty": {
                "mean_share_different": float(share.mean()),
                **novelty_histogram(share),
            },
        },
    }


def reconstructions(
    space: FrameSpace, data: FrameSet, generators: dict[str, Generator], n: int = 6
) -> dict[str, np.ndarray]:
    """{"frames": n recorded frames, each variant: its reconstructions}, uint8 RGB as shown."""
    picked = np.linspace(0, len(data) - 1, n).astype(int)
    frames = space.from_uint8(data.images[picked])
    shown = {"frames": space.display(frames)}
    for variant, generator in generators.items():
        device = next(generator.parameters()).device
        with torch.no_grad():
            shown[variant] = space.display(generator.reconstruct(frames.to(device)))
    return shown
