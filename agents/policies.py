"""SB3 policies over HWC uint8 observations, selected by architecture name.

Their constructor keywords are plain JSON (``arch``, ``channels_last``), so a saved zip records
the architecture readably and ``agents.load`` can rebuild the policy without unpickling.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy

from agents.architectures import HWCFeatures


class _HWCPolicy(BasePolicy):
    """Mixin: the features extractor is ``HWCFeatures(arch)`` and conv weights are stored
    channels-last. Put it before the SB3 policy class in the bases (``super()`` is then that
    class; deriving from ``BasePolicy`` leaves the MRO as it is and types the mixin)."""

    default_arch = "interpretable"

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        lr_schedule: Any,
        arch: str | None = None,
        channels_last: bool = True,
        **kwargs: Any,
    ) -> None:
        arch = arch or self.default_arch  # HWCFeatures refuses an unknown one
        self.arch = arch
        self.channels_last = channels_last
        kwargs.setdefault("net_arch", [])
        kwargs["features_extractor_class"] = HWCFeatures
        kwargs["features_extractor_kwargs"] = {"arch": arch}
        kwargs["normalize_images"] = False  # HWCFeatures scales by 1/255 itself, on the device
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        if channels_last:  # after SB3's (orthogonal) init, which needs contiguous weights
            # torch's stub overloads of Module.to omit the memory_format keyword it accepts
            self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(arch=self.arch, channels_last=self.channels_last)
        for key in ("features_extractor_class", "features_extractor_kwargs", "normalize_images"):
            data.pop(key, None)
        return data


class HWCActorCriticPolicy(_HWCPolicy, ActorCriticPolicy):
    """Actor-critic policy whose shared trunk is ``HWCFeatures(arch)``; heads are single
    linear layers (value: 1 unit, policy: one logit per action)."""


class HWCDQNPolicy(_HWCPolicy, DQNPolicy):
    """DQN policy (online and target Q-networks) whose trunk is ``HWCFeatures(arch)``."""

    default_arch = "nature"


POLICY_CLASSES: dict[str, type[BasePolicy]] = {
    "HWCActorCriticPolicy": HWCActorCriticPolicy,
    "HWCDQNPolicy": HWCDQNPolicy,
}
