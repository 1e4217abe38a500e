"""PPO and DQN exactly as in SB3, except that they keep HWC image observations as they are.

SB3 wraps every channel-last image env in ``VecTransposeImage`` (a copy and transpose per
step on the CPU); the policies in ``agents.policies`` read HWC uint8 directly and move the
layout change to the device. PPO also collects rollouts under ``torch.inference_mode``.
A model saved by these classes loads with plain ``stable_baselines3.PPO.load``/``DQN.load``.
"""

from __future__ import annotations

from typing import Any

import stable_baselines3 as sb3
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


def _wrap_env_keep_layout(env: Any, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
    """SB3's ``_wrap_env`` without the image transpose."""
    if isinstance(env, VecEnv):
        return env
    single = Monitor(env) if monitor_wrapper else env
    return DummyVecEnv([lambda: single])


class PPO(sb3.PPO):
    """SB3 PPO for HWC policies; rollouts run under ``torch.inference_mode``.

    ``iteration_offset`` (set on resume: rollouts done before this piece) keeps
    ``time/iterations`` counting across pieces of one run.
    """

    _wrap_env = staticmethod(_wrap_env_keep_layout)
    iteration_offset = 0

    def dump_logs(self, iteration: int = 0) -> None:
        super().dump_logs(iteration + self.iteration_offset)

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        with torch.inference_mode():
            return super().collect_rollouts(*args, **kwargs)


class DQN(sb3.DQN):
    """SB3 DQN for HWC policies."""

    _wrap_env = staticmethod(_wrap_env_keep_layout)


ALGORITHMS: dict[str, type[sb3.PPO] | type[sb3.DQN]] = {"ppo": PPO, "dqn": DQN}
