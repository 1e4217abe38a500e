"""C: the linear controller a_t = W [z_t, h_t] + b, trained by CMA-ES (no gradients).

``inputs="zh"`` (the default) reads [z_t, h_t]; ``inputs="z"`` reads z_t only (the original
paper's "V model only" agent, 632 +- 251 on CarRacing), so C ignores M's state entirely.

Continuous actions (Box), ``action_map="bounds"``: each output goes through tanh and is mapped
onto the action's bounds, ``low + (tanh(o) + 1) / 2 * (high - low)``. ``action_map="carracing"``
(the default for CarRacing) is the original's: steering tanh(o1), gas (tanh(o2) + 1) / 2, brake
clip(tanh(o3), 0, 1), so that a zero controller drives at half gas without braking.
Discrete actions: one score per action, argmax.
For CarRacing: (32 + 256) * 3 + 3 = 867 parameters ("zh"), 32 * 3 + 3 = 99 ("z").
Layer name: ``linear``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import torch
from torch import nn

ACTION_MAPS = ("bounds", "carracing")
INPUTS = ("zh", "z")  # what C reads: [z, h], or z alone


def action_size(space: gymnasium.Space) -> int:
    """Controller outputs (and MDN-RNN action inputs) for an action space."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    raise ValueError(f"unsupported action space {space}: need Discrete or a 1-D Box")


class Controller(nn.Module):
    """features (N, n_in) -> controller outputs (N, n_out); n_in is z_size + hidden for
    ``inputs="zh"``, z_size for ``inputs="z"`` (``features(z, h)`` builds them)."""

    def __init__(
        self,
        z_size: int,
        hidden: int,
        space: gymnasium.Space,
        action_map: str = "bounds",
        inputs: str = "zh",
    ) -> None:
        super().__init__()
        if action_map not in ACTION_MAPS:
            raise ValueError(f"unknown action_map {action_map!r}; valid: {', '.join(ACTION_MAPS)}")
        if inputs not in INPUTS:
            raise ValueError(f"unknown controller inputs {inputs!r}; valid: {', '.join(INPUTS)}")
        if action_map == "carracing" and getattr(space, "shape", None) != (3,):
            raise ValueError("action_map 'carracing' needs a Box action space of shape (3,)")
        self.space, self.action_map, self.inputs = space, action_map, inputs
        self.discrete = isinstance(space, gymnasium.spaces.Discrete)
        n_in = z_size + hidden if inputs == "zh" else z_size
        self.linear = nn.Linear(n_in, action_size(space))
        if not self.discrete:
            self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32))

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def features(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """What C reads from z (N, z_size) and M's h (N, hidden): (N, n_in)."""
        return torch.cat([z, h], dim=-1) if self.inputs == "zh" else z

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def decide(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Raw outputs (N, n_out) for z (N, z_size) and h (N, hidden)."""
        return self(self.features(z, h))

    def to_action(self, out: torch.Tensor) -> torch.Tensor:
        """Outputs (N, n_out) -> actions: (N,) int64 (discrete) or (N, n_out) in bounds."""
        if self.discrete:
            return out.argmax(dim=-1)
        t = torch.tanh(out)
        if self.action_map == "carracing":
            return torch.stack([t[..., 0], (t[..., 1] + 1) / 2, t[..., 2].clamp(min=0)], dim=-1)
        return self.low + (torch.tanh(out) + 1) / 2 * (self.high - self.low)

    def env_action(self, action: torch.Tensor) -> np.ndarray | int:
        """One action (n_out,) or () -> what ``env.step`` takes."""
        return int(action) if self.discrete else action.detach().cpu().numpy().astype(np.float32)

    def encode_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actions as the MDN-RNN's input (N, n_out): one-hot when discrete."""
        if self.discrete:
            return nn.functional.one_hot(action.long(), self.linear.out_features).float()
        return action.float()

    def set_flat(self, flat: np.ndarray) -> None:
        """Set all parameters from one vector (n_params,): weights row-major, then bias."""
        flat = torch.as_tensor(np.asarray(flat), dtype=torch.float32)
        if flat.numel() != self.n_params:
            raise ValueError(f"expected {self.n_params} parameters, got {flat.numel()}")
        n_w = self.linear.weight.numel()
        with torch.no_grad():
            self.linear.weight.copy_(flat[:n_w].view_as(self.linear.weight))
            self.linear.bias.copy_(flat[n_w:])
