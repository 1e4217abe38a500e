"""Play counterfactual levels: a VecEnv wrapper that edits each Procgen level as it starts.

`EditedLevels(venv, edit)` applies ``edit(state_bytes) -> state_bytes`` (e.g.
`envs.coinrun_state.invisible_buzzsaws`) to every env after `reset()` and to every env whose
episode just ended (procgen has already started the next level inside that step), and returns
the edited levels' observations. Level seeds, infos and episode statistics are the wrapped
env's, so the same seeds give the same levels with and without the edit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from stable_baselines3.common.vec_env import VecEnvWrapper

from envs.procgen_vec import ProcgenVecEnv

StateEdit = Callable[[bytes], bytes]


class EditedLevels(VecEnvWrapper):
    """A `ProcgenVecEnv` whose every level is edited by `edit` before the agent sees it."""

    def __init__(self, venv: ProcgenVecEnv, edit: StateEdit) -> None:
        if not isinstance(venv, ProcgenVecEnv):
            raise TypeError(f"EditedLevels wraps a ProcgenVecEnv, got {type(venv).__name__}")
        super().__init__(venv)
        self.edit = edit

    def _edit(self, indices: list[int]) -> np.ndarray:
        if indices:
            states = self.venv.get_states(indices)
            self.venv.set_states([self.edit(s) for s in states], indices)
        return self.venv.observations()

    def reset(self) -> np.ndarray:
        self.venv.reset()
        return self._edit(list(range(self.num_envs)))

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        _, rewards, dones, infos = self.venv.step_wait()
        return self._edit([int(i) for i in np.flatnonzero(dones)]), rewards, dones, infos

    def get_states(self, indices=None) -> list[bytes]:
        return self.venv.get_states(indices)

    def set_states(self, states, indices=None) -> None:
        self.venv.set_states(states, indices)
