"""How well V reconstructs frames it never trained on: pixel error and sharpness.

Sharpness is the variance of the Laplacian of the grey image (a standard focus measure: a
blurred image has weak second derivatives), for V's reconstructions (decoded from the mean
code mu, no sampling) and for the real frames; their ratio is 1 for reconstructions as sharp
as the frames and falls towards 0 as they blur. Held-out frames are new episodes of the run's
own env and rollout policy, on seeds far from the training ones.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from agents.executor import Executor
from world_model import rollouts
from world_model.vae import ConvVAE, frames_to_tensor

HELD_OUT_SEED_OFFSET = 2_000_000_000  # beyond training (seed + i) and evaluation (1e9 + ...)
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
_GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601 luma


def laplacian_sharpness(images: torch.Tensor) -> torch.Tensor:
    """images (N, 3, H, W) in [0, 1] -> (N,): the variance of the grey image's Laplacian
    (interior pixels), in squared intensity units."""
    grey = (images * _GREY).sum(1, keepdim=True)
    return F.conv2d(grey, _LAPLACIAN).flatten(1).var(1)


@dataclass(frozen=True)
class VisionQuality:
    """V on held-out frames: ``pixel_mse`` (mean squared error per pixel and channel, [0, 1]
    intensities), ``reconstruction`` (the squared error summed over a frame's 3x64x64 values,
    V's training term), the mean sharpness of the reconstructions and of the real frames and
    ``sharpness_ratio`` (reconstructions / real), over ``frames`` frames."""

    frames: int
    pixel_mse: float
    reconstruction: float
    sharpness_reconstructed: float
    sharpness_real: float
    sharpness_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def vision_quality(vae: ConvVAE, frames: np.ndarray, batch_size: int = 256) -> VisionQuality:
    """Score ``vae`` on uint8 frames (N, 64, 64, 3)."""
    if len(frames) == 0:
        raise ValueError("no frames to score")
    vae.eval()
    squared, sharp_rec, sharp_real = [], [], []
    for start in range(0, len(frames), batch_size):
        x = frames_to_tensor(frames[start : start + batch_size])
        mu, _ = vae.encoder(x)
        recon = vae.decoder(mu)
        squared.append((recon - x).pow(2).flatten(1).sum(1))
        sharp_rec.append(laplacian_sharpness(recon))
        sharp_real.append(laplacian_sharpness(x))
    per_frame = torch.cat(squared)
    rec, real = torch.cat(sharp_rec).mean().item(), torch.cat(sharp_real).mean().item()
    return VisionQuality(
        frames=len(frames),
        pixel_mse=per_frame.mean().item() / (3 * 64 * 64),
        reconstruction=per_frame.mean().item(),
        sharpness_reconstructed=rec,
        sharpness_real=real,
        sharpness_ratio=rec / real if real > 0 else float("nan"),
    )


def held_out_frames(
    executor: Executor,
    env_id: str,
    policy: str,
    episodes: int,
    max_steps: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
) -> np.ndarray:
    """uint8 frames (N, 64, 64, 3) of ``episodes`` new episodes played by ``policy`` (a
    ``world_model.rollouts`` policy name), on seeds from ``HELD_OUT_SEED_OFFSET + seed``."""
    with tempfile.TemporaryDirectory(prefix="held-out-") as tmp:
        rollouts.collect(
            executor,
            env_id,
            tmp,
            episodes,
            max_steps,
            HELD_OUT_SEED_OFFSET + seed,
            policy,
            env_kwargs=env_kwargs,
        )
        frames = []
        for path in rollouts.episode_files(tmp):
            with np.load(path) as data:
                frames.append(data["frames"])
    return np.concatenate(frames)


def run_vision_quality(run_dir: Path, frames: np.ndarray) -> VisionQuality:
    """Score the V of the World Models run in ``run_dir`` (its ``vae.safetensors``)."""
    from world_model.model import load_weights
    from world_model.rundir import read_config

    config = read_config(run_dir)
    vae = ConvVAE(int(config.get("z_size", 32)))
    load_weights(vae, Path(run_dir) / "vae.safetensors")
    return vision_quality(vae, frames)
