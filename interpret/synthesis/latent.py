"""Sampling states of interest: minimize over latent vectors z
    E(z) = target(agent outputs on g(z)) + reg_weight * ||z||^2 / 2
with Adam from random starts drawn from the prior. ||z||^2 / 2 is the prior's negative log
density (up to a constant), keeping z where the generator was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.policy_view import Outputs, PolicyView
from interpret.synthesis.frames import FrameSpace
from interpret.synthesis.generator import Generator
from interpret.synthesis.targets import Target


@dataclass
class Synthesized:
    """Optimized states, best (lowest energy) first.

    Attributes:
        latents: (N, latent_dim). images: (N, C, H, W) in [0, 1].
        energy, target: (N,) final energy and its target part. start_energy: (N,) at the start.
        history: (steps + 1,) mean energy over all starts after each step.
    """

    latents: np.ndarray
    images: np.ndarray
    energy: np.ndarray
    target: np.ndarray
    start_energy: np.ndarray
    history: np.ndarray


def agent_outputs(
    view: PolicyView, space: FrameSpace, images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The agent's outputs on generator images (N, C, H, W) in [0, 1], differentiably."""
    return view.outputs(view.preprocess(space.to_obs(images)))


def readout(view: PolicyView, out: Outputs) -> dict[str, np.ndarray]:
    """What a card shows of the agent's outputs, from the view's answers: ``q`` (N, A) or the
    critic's ``value`` (N,); ``probabilities`` (N, A) of a stochastic discrete policy, or the
    continuous actions' ``scores`` (N, A)."""
    q, value = view.action_values(out), view.state_value(out)
    log_probs = view.action_log_probs(out)
    shown = {"q": q} if q is not None else {"value": value} if value is not None else {}
    if log_probs is not None:
        shown["probabilities"] = log_probs.exp()
    elif q is None:
        shown["scores"] = view.action_scores(out)
    return {k: v.detach().float().cpu().numpy() for k, v in shown.items()}


def energy_terms(
    generator: Generator,
    view: PolicyView,
    space: FrameSpace,
    target: Target,
    z: torch.Tensor,
    reg_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(energy, target part, images) for latents z (N, latent_dim)."""
    images = generator.decode(z)
    goal = target(agent_outputs(view, space, images)).reshape(-1)
    return goal + reg_weight * 0.5 * (z**2).sum(dim=1), goal, images


def optimize_latents(
    generator: Generator,
    view: PolicyView,
    space: FrameSpace,
    target: Target,
    n_samples: int,
    *,
    restarts: int = 2,
    steps: int = 200,
    lr: float = 0.05,
    reg_weight: float = 0.05,
    seed: int = 0,
) -> Synthesized:
    """Optimize ``n_samples * restarts`` random starts and keep the ``n_samples`` best."""
    generator.eval()
    generator.requires_grad_(False)
    view.module.requires_grad_(False)
    rng = torch.Generator().manual_seed(seed)
    n = n_samples * restarts
    z0 = torch.randn(n, generator.config.latent_dim, generator=rng).to(view.device)
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    with torch.no_grad():
        start_energy = energy_terms(generator, view, space, target, z0, reg_weight)[0]
    history = [float(start_energy.mean())]
    for _ in range(steps):
        energy, _, _ = energy_terms(generator, view, space, target, z, reg_weight)
        optimizer.zero_grad(set_to_none=True)
        energy.sum().backward()
        optimizer.step()
        history.append(float(energy.detach().mean()))
    with torch.no_grad():
        energy, goal, images = energy_terms(generator, view, space, target, z, reg_weight)
    history[-1] = float(energy.mean())
    best = torch.argsort(energy)[:n_samples]
    return Synthesized(
        latents=z.detach()[best].cpu().numpy(),
        images=images[best].cpu().numpy(),
        energy=energy[best].cpu().numpy(),
        target=goal[best].cpu().numpy(),
        start_energy=start_energy[best].cpu().numpy(),
        history=np.asarray(history, dtype=np.float32),
    )
