"""A dream environment: a gymnasium env that steps the MDN-RNN instead of the game.

Observation: float32 (z_size + hidden,) = [z_t, h_t] (a z-only controller reads the first
z_size). ``step``
feeds [z_t, a_t] to the LSTM, samples z_{t+1} from the mixture at ``temperature`` (higher:
a more uncertain, harder dream, which the original used to keep a controller from exploiting
the model), and reads the reward and done from M's optional heads (reward 0 / never done
without them; an episode also ends after ``max_steps``). Episodes start from a real z, drawn
from ``initial_z`` (e.g. encoded first frames of the rollouts). ``render()`` decodes z with V
to a 64x64x3 uint8 frame.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch

from world_model.mdn_rnn import sample_next_z
from world_model.model import WorldModel
from world_model.vae import tensor_to_frames


class DreamEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012  (gymnasium's convention)

    def __init__(
        self,
        model: WorldModel,
        initial_z: np.ndarray,
        temperature: float = 1.0,
        max_steps: int = 1000,
        render_mode: str | None = "rgb_array",
    ) -> None:
        self.model, self.temperature, self.max_steps = model, float(temperature), max_steps
        self.initial_z = torch.as_tensor(np.asarray(initial_z), dtype=torch.float32)
        self.render_mode = render_mode
        mdn = model.mdn
        size = mdn.z_size + mdn.hidden
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = model.space
        self._generator = torch.Generator()
        self.z = self.state = None
        self.t = 0

    def _obs(self) -> np.ndarray:
        return torch.cat([self.z[0], self.state[0][0, 0]]).numpy().astype(np.float32)

    @torch.no_grad()
    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._generator.manual_seed(int(self.np_random.integers(2**62)))
        i = int(self.np_random.integers(len(self.initial_z)))
        self.z = self.initial_z[i : i + 1].clone()
        self.state = self.model.mdn.initial_state(1)
        self.t = 0
        return self._obs(), {}

    @torch.no_grad()
    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.z is None:
            raise RuntimeError("call reset() before step()")
        ctrl = self.model.controller
        a = torch.as_tensor(np.asarray(action)).reshape(1, *np.shape(action))
        h, self.state = self.model.mdn.step(self.z, ctrl.encode_action(a), self.state)
        out = self.model.mdn.mixture(h)
        self.z = sample_next_z(
            out["logpi"], out["mu"], out["logsigma"], self.temperature, self._generator
        )
        reward = float(out["reward"][0]) if "reward" in out else 0.0
        done = False
        if "done" in out:
            p_done = float(torch.sigmoid(out["done"][0]))
            done = bool(self.np_random.random() < p_done) if self.temperature > 0 else p_done > 0.5
        self.t += 1
        return self._obs(), reward, done, self.t >= self.max_steps, {}

    @torch.no_grad()
    def render(self) -> np.ndarray:
        """V's decoding of the current z: uint8 (64, 64, 3)."""
        return tensor_to_frames(self.model.vae.decoder(self.z))[0]
