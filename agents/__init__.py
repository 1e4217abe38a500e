"""Agents: SB3 PPO/DQN construction, policy architectures, loading, the Inspectable view."""

from envs import _quiet  # noqa: F401  (first: SB3 imports old gym, which prints a banner)

# isort: split
from agents.architectures import ARCHS
from agents.inspectable import Inspectable, UnknownLayerError
from agents.loading import load, resolve_model_path

__all__ = ["ARCHS", "Inspectable", "UnknownLayerError", "load", "resolve_model_path"]
