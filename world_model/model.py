"""The World Models agent as one object: V, M and C, stored without pickle, and stepped.

Weights live in safetensors files (``vae.safetensors``, ``mdn.safetensors``,
``controller.safetensors`` / ``controller_best.safetensors``) and shapes in the run's JSON
config, so loading never unpickles anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from agents.fileio import atomic_path
from world_model.controller import Controller, action_size
from world_model.mdn_rnn import MDNRNN
from world_model.vae import ConvVAE, frames_to_tensor


class WeightsFileError(ValueError):
    """A weights file that is missing or does not match the config. One line."""


def space_to_json(space: gymnasium.Space) -> dict[str, Any]:
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"discrete": int(space.n)}
    return {"low": space.low.tolist(), "high": space.high.tolist()}


def space_from_json(data: dict[str, Any]) -> gymnasium.Space:
    if "discrete" in data:
        return gymnasium.spaces.Discrete(int(data["discrete"]))
    low, high = np.asarray(data["low"], np.float32), np.asarray(data["high"], np.float32)
    return gymnasium.spaces.Box(low, high, dtype=np.float32)


def save_weights(module: nn.Module, path: str | Path) -> None:
    """``module``'s state dict as safetensors, atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp))


def load_weights(module: nn.Module, path: str | Path) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    try:
        module.load_state_dict(load_file(str(path)), strict=True)
    except Exception as err:  # safetensors header errors, shape mismatches
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsFileError(f"{path}: cannot load weights ({first})") from err
    return module


class WorldModel(nn.Module):
    """V + M + C with the shapes of one run's config (children ``vae``, ``mdn``, ``controller``)."""

    def __init__(
        self,
        space: gymnasium.Space,
        z_size: int = 32,
        hidden: int = 256,
        action_map: str = "bounds",
        controller_input: str = "zh",
        **mdn: Any,
    ) -> None:
        super().__init__()
        self.space = space
        self.vae = ConvVAE(z_size)
        self.mdn = MDNRNN(z_size, action_size(space), hidden, **mdn)
        self.controller = Controller(z_size, hidden, space, action_map, controller_input)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WorldModel:
        return cls(
            space_from_json(config["action_space"]),
            z_size=config["z_size"],
            hidden=config["hidden"],
            action_map=config.get("action_map", "bounds"),
            controller_input=config.get("controller_input", "zh"),  # runs before the option
            n_mix=config["n_mix"],
            predict_reward=config["predict_reward"],
            predict_done=config["predict_done"],
        )

    @classmethod
    def load(
        cls, run_dir: str | Path, config: dict[str, Any], controller: str | None
    ) -> WorldModel:
        """The run's V and M, and controller file ``controller`` (None: leave C at init)."""
        run_dir = Path(run_dir)
        model = cls.from_config(config)
        load_weights(model.vae, run_dir / "vae.safetensors")
        load_weights(model.mdn, run_dir / "mdn.safetensors")
        if controller is not None:
            load_weights(model.controller, run_dir / controller)
        return model.eval()


class Policy:
    """Plays one env with a ``WorldModel``: encode frame -> z, C([z, h] or z) -> action, M steps
    h (also for a z-only C: M's state is what the dream and the view read).

    ``deterministic``: z is the encoder's mean (else a sample from q(z|x), as in training).
    """

    def __init__(self, model: WorldModel, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic
        self.state = model.mdn.initial_state(1)

    def reset(self) -> None:
        self.state = self.model.mdn.initial_state(1)

    @torch.no_grad()
    def __call__(self, frame: np.ndarray) -> np.ndarray | int:
        """A 64x64x3 uint8 frame -> the env action; advances the recurrent state."""
        x = frames_to_tensor(frame[None])
        mu, logvar = self.model.vae.encoder(x)
        z = mu if self.deterministic else mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        h = self.state[0][0]
        ctrl = self.model.controller
        action = ctrl.to_action(ctrl.decide(z, h))
        _, self.state = self.model.mdn.step(z, ctrl.encode_action(action), self.state)
        return ctrl.env_action(action[0])
