"""Agents: SB3 PPO/DQN construction, policy architectures, loading, the Inspectable view."""

from agents.architectures import ARCHS
from agents.inspectable import Inspectable, UnknownLayerError
from agents.loading import load, resolve_model_path
from envs import _quiet  # noqa: F401  (before anything imports old gym)

__all__ = ["ARCHS", "Inspectable", "UnknownLayerError", "load", "resolve_model_path"]
