"""The per-pixel weight of the reconstruction loss: the agent's guided-backprop saliency.

Guided backpropagation is captum's ``GuidedBackprop``. It overrides the backward pass of
``nn.ReLU`` *modules* only; every ReLU in our architectures (``ConvReLU``, ``LinearReLU``,
IMPALA's ``ResidualBlock``) and in SB3's ``NatureCNN``/MLP extractors is a module, so guided
backprop is complete for them. The World Models encoder calls ``torch.relu``; its view runs the
encoder with ``nn.ReLU`` modules (``view.relu_modules``), which ``PolicyOutput`` holds so that
captum overrides them too. A policy with functional ReLUs would get plain gradients through
those (``relu_module_count`` lets callers warn when a policy has none at all).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from agents.policy_view import PolicyView
from interpret.synthesis.frames import FrameSpace
from interpret.synthesis.latent import agent_outputs


class PolicyOutput(nn.Module):
    """Generator images (N, C, H, W) in [0, 1] -> the agent's per-action scores (N, A).

    Holds the policy as a submodule so that captum finds (and hooks) its ReLU modules.
    """

    def __init__(self, view: PolicyView, space: FrameSpace) -> None:
        super().__init__()
        self.policy = view.module
        self.relus = nn.ModuleList(view.relu_modules)
        self.view = view
        self.space = space

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.view.action_scores(agent_outputs(self.view, self.space, images))
        return scores.reshape(len(scores), -1)


def relu_module_count(module: nn.Module | PolicyView) -> int:
    """nn.ReLU modules of a module, or of a view (its ``module`` and ``relu_modules``)."""
    if isinstance(module, nn.Module):
        return sum(isinstance(m, nn.ReLU) for m in module.modules())
    extra = sum(isinstance(m, nn.ReLU) for m in module.relu_modules)
    return relu_module_count(module.module) + extra


def blur_and_normalize(magnitude: torch.Tensor, kernel_size: int = 5) -> torch.Tensor:
    """(N, H, W) non-negative -> averaged over ``kernel_size``^2 windows, divided by each
    frame's maximum (a frame with no gradient stays all zero)."""
    x = magnitude.unsqueeze(1)
    pad = kernel_size // 2
    x = nn.functional.avg_pool2d(x, kernel_size, 1, pad, count_include_pad=False).squeeze(1)
    peak = x.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return x / peak


def saliency_maps(
    view: PolicyView,
    space: FrameSpace,
    frames: np.ndarray,
    kernel_size: int = 5,
    batch_size: int = 64,
) -> np.ndarray:
    """Saliency weight of each frame: (N, H, W) float32 in [0, 1].

    The magnitude (summed over channels) of the guided-backprop gradient of the agent's score
    for its preferred action (argmax of Q or of the logits) with respect to the generator-space
    frame, blurred with a ``kernel_size`` averaging filter and normalized to a maximum of 1.
    """
    from captum.attr import GuidedBackprop

    model = PolicyOutput(view, space).eval()
    method = GuidedBackprop(model)
    maps = []
    for start in range(0, len(frames), batch_size):
        images = space.from_uint8(frames[start : start + batch_size]).to(view.device)
        with torch.no_grad():
            target = model(images).argmax(dim=1)
        grad = method.attribute(images.requires_grad_(True), target=target.tolist())
        magnitude = grad.detach().abs().sum(dim=1)
        maps.append(blur_and_normalize(magnitude, kernel_size).cpu().numpy())
    return np.concatenate(maps).astype(np.float32)
