"""Which env a verb plays a model in: the flags, a preferred source, else the model's record."""

from types import SimpleNamespace

import gymnasium as gym
import pytest

from envs import EnvSpecError
from interpret.core.errors import InterpretError
from interpret.core.model_env import resolve_env

EASY = {"distribution_mode": "easy", "paint_vel_info": True}
VIEW = SimpleNamespace(
    metadata={"env_id": "procgen:coinrun", "env_kwargs": EASY},
    action_space=gym.spaces.Discrete(15),
    accepts_observations=lambda shape: shape == (64, 64, 3),
)


def test_the_models_own_env_and_options():
    assert resolve_env(VIEW, None, None) == ("procgen:coinrun", EASY)
    assert resolve_env(VIEW, "procgen:coinrun", None) == ("procgen:coinrun", EASY)


def test_flags_win():
    assert resolve_env(VIEW, None, ["distribution_mode=hard"]) == (
        "procgen:coinrun",
        {"distribution_mode": "hard"},
    )
    assert resolve_env(VIEW, "procgen:bigfish", None) == ("procgen:bigfish", {})


def test_a_preferred_source_comes_before_the_model():
    preferred = ("procgen:coinrun", {"distribution_mode": "hard"})
    assert resolve_env(VIEW, None, None, preferred) == preferred
    assert resolve_env(VIEW, None, None, (None, {})) == ("procgen:coinrun", EASY)


def test_no_env_anywhere_and_bad_ids_are_user_errors():
    with pytest.raises(InterpretError, match="pass --env"):
        resolve_env(SimpleNamespace(metadata={}), None, None)
    with pytest.raises(EnvSpecError):
        resolve_env(VIEW, "procgen:nosuchgame", None)


def test_a_model_of_another_game_is_refused():
    pong = SimpleNamespace(
        metadata={"env_id": "atari:Pong"},
        action_space=gym.spaces.Discrete(6),
        accepts_observations=lambda shape: True,  # the actions are what differ here
    )
    with pytest.raises(InterpretError, match="does not fit procgen:coinrun: 15 discrete actions"):
        resolve_env(pong, "procgen:coinrun", None)
