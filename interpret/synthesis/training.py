"""Training the generator: saliency-weighted reconstruction + agent perception + KL.

Per sample (summed over pixels and channels, averaged over the batch):
- reconstruction: sum (1 + saliency) * (reconstruction - frame)^2, the saliency map of the real
  frame being a stored constant (``saliency_weighting=False``: the plain squared error);
- perception: the squared difference between the agent's outputs on the reconstruction and on
  the real frame: Q-values, or log-probabilities (shift-invariant, unlike logits) and value;
  continuous actions and other outputs compare as they are;
- KL of the encoder's Gaussian from the unit Gaussian.
Variants: ``full`` (all three), ``recon`` (saliency-weighted reconstruction + KL: the paper's
"reconstruction only"), ``vae`` (plain VAE: unweighted reconstruction + KL).
Training checkpoints after every epoch (``torch.load(weights_only=True)`` to resume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.fileio import atomic_path
from agents.policy_view import PolicyView
from interpret.synthesis.frames import FrameSet, FrameSpace
from interpret.synthesis.generator import Generator, GeneratorConfig

VARIANTS = ("full", "recon", "vae")


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1.0
    perception_weight: float = 1000.0
    saliency_weighting: bool = True
    latent_dim: int = 64
    seed: int = 0

    def variant(self, name: str) -> TrainSettings:
        """The settings of a loss variant (``full``, ``recon``, ``vae``)."""
        if name == "full":
            return self
        if name == "recon":
            return replace(self, perception_weight=0.0)
        if name == "vae":
            return replace(self, perception_weight=0.0, saliency_weighting=False)
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}")


def perception_features(view: PolicyView, outputs: dict[str, Any]) -> torch.Tensor:
    """What the perception loss compares: (N, F) from the agent's outputs (tensors or arrays)."""
    roles, parts = view.output_roles(), []
    for key in sorted(outputs):
        value = torch.as_tensor(outputs[key]).float().reshape(len(outputs[key]), -1)
        parts.append(torch.log_softmax(value, dim=1) if roles.get(key) == "logits" else value)
    return torch.cat(parts, dim=1)


def reconstruction_loss(
    recon: torch.Tensor, frames: torch.Tensor, saliency: torch.Tensor | None
) -> torch.Tensor:
    """Mean over the batch of sum (1 + saliency) * squared error; saliency (N, H, W) or None."""
    error = (recon - frames) ** 2
    if saliency is not None:
        error = error * (1.0 + saliency.detach().unsqueeze(1))
    return error.flatten(1).sum(dim=1).mean()


def perception_loss(
    view: PolicyView, space: FrameSpace, recon: torch.Tensor, real: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of the squared distance between the agent's perception features on
    the reconstruction and ``real`` (N, F), the features on the real frames."""
    out = view.outputs(view.preprocess(space.to_obs(recon)))
    return ((perception_features(view, out) - real) ** 2).sum(dim=1).mean()


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(N(mean, exp(logvar)) || N(0, I))."""
    return (-0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(dim=1)).mean()


@torch.no_grad()
def agent_features(
    view: PolicyView, space: FrameSpace, frames: np.ndarray, batch: int = 256
) -> dict[str, np.ndarray]:
    """The agent's outputs on recorded frames (N, H, W, C) uint8, as arrays."""
    parts: dict[str, list] = {}
    for start in range(0, len(frames), batch):
        x = space.from_uint8(frames[start : start + batch]).to(view.device)
        for key, value in view.outputs(view.preprocess(space.to_obs(x))).items():
            parts.setdefault(key, []).append(value.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def train_generator(
    view: PolicyView,
    space: FrameSpace,
    data: FrameSet,
    settings: TrainSettings,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    desc: str = "training generator",
) -> tuple[Generator, list[dict[str, float]]]:
    """Train a generator on ``data``; returns it (eval mode) and the per-epoch loss history
    ({"epoch", "reconstruction", "perception", "kl", "total", "seconds"}, batch means).

    With ``checkpoint``, resumes from it if it exists and rewrites it after every epoch.
    """
    torch.manual_seed(settings.seed)
    config = GeneratorConfig(space.channels, space.height, space.width, settings.latent_dim)
    generator = Generator(config).to(view.device)
    optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr)
    history: list[dict[str, float]] = []
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=True, map_location=view.device)
        generator.load_state_dict(state["generator"])
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]
    view.module.requires_grad_(False)
    real_features = perception_features(view, data.outputs)
    rng = np.random.default_rng(settings.seed + len(history))
    n = len(data)
    steps = -(-n // settings.batch_size)
    bar = tqdm(
        total=settings.epochs * steps,
        initial=len(history) * steps,
        desc=desc,
        unit="batch",
        disable=None if progress else True,
        leave=False,
    )
    try:
        for epoch in range(len(history), settings.epochs):
            generator.train()
            sums = {"reconstruction": 0.0, "perception": 0.0, "kl": 0.0, "total": 0.0}
            started = time.perf_counter()
            order = rng.permutation(n)
            for start in range(0, n, settings.batch_size):
                idx = order[start : start + settings.batch_size]
                losses = _batch_losses(generator, view, space, data, real_features, idx, settings)
                optimizer.zero_grad(set_to_none=True)
                losses["total"].backward()
                optimizer.step()
                for key in sums:
                    sums[key] += float(losses[key].detach()) / steps
                bar.update(1)
                bar.set_postfix(loss=f"{float(losses['total'].detach()):.1f}")
            history.append({"epoch": epoch + 1, **sums, "seconds": time.perf_counter() - started})
            if checkpoint is not None:
                state = {
                    "generator": generator.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                }
                with atomic_path(Path(checkpoint), suffix=".pt") as tmp:
                    torch.save(state, tmp)
    finally:
        bar.close()
    return generator.eval(), history


def _batch_losses(
    generator: Generator,
    view: PolicyView,
    space: FrameSpace,
    data: FrameSet,
    real_features: torch.Tensor,
    idx: np.ndarray,
    settings: TrainSettings,
) -> dict[str, torch.Tensor]:
    device = view.device
    frames = space.from_uint8(data.images[idx]).to(device)
    saliency = torch.as_tensor(data.saliency[idx], device=device).float()
    recon, mean, logvar = generator(frames)
    terms = {
        "reconstruction": reconstruction_loss(
            recon, frames, saliency if settings.saliency_weighting else None
        ),
        "kl": kl_loss(mean, logvar),
    }
    real = real_features[idx].to(device)
    with torch.set_grad_enabled(settings.perception_weight > 0):  # else only reported
        terms["perception"] = perception_loss(view, space, recon, real)
    terms["total"] = (
        terms["reconstruction"]
        + settings.perception_weight * terms["perception"]
        + settings.kl_weight * terms["kl"]
    )
    return terms
