"""The baseline the paper compares against: activation maximization in pixel space.

Optimizes generator-space images directly for the same target, parametrized as
sigmoid(logits) to stay in [0, 1], from uniform noise, with total-variation regularization and
random jitter (the image is rolled by up to ``jitter`` pixels each step before the agent sees
it). Written here because captum offers attribution, not input optimization.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.policy_view import PolicyView
from interpret.synthesis.frames import FrameSpace
from interpret.synthesis.latent import agent_outputs
from interpret.synthesis.targets import Target


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute difference between neighbouring pixels of (N, C, H, W) images."""
    dh = (images[:, :, 1:] - images[:, :, :-1]).abs().flatten(1).mean(dim=1)
    dw = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().flatten(1).mean(dim=1)
    return dh + dw


def maximize_pixels(
    view: PolicyView,
    space: FrameSpace,
    target: Target,
    n_samples: int,
    *,
    steps: int = 200,
    lr: float = 0.05,
    tv_weight: float = 1.0,
    jitter: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) in [0, 1], target energy (N,) on the unjittered images)."""
    view.module.requires_grad_(False)
    rng = torch.Generator().manual_seed(seed)
    shape = (n_samples, space.channels, space.height, space.width)
    logits = (torch.rand(shape, generator=rng) * 2 - 1).to(view.device).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        images = torch.sigmoid(logits)
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=rng))
        shifted = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
        energy = target(agent_outputs(view, space, shifted)).reshape(-1)
        loss = (energy + tv_weight * total_variation(images)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        images = torch.sigmoid(logits)
        energy = target(agent_outputs(view, space, images)).reshape(-1)
    return images.cpu().numpy(), energy.cpu().numpy()
