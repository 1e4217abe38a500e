"""Environment factories: `make_vec_env` / `make_env` for every env id the framework takes.

Ids: `procgen:<game>` (16 games), `atari:<Game>` (ALE v5 + RL-Zoo preprocessing),
`box2d:<id>` (e.g. `box2d:CarRacing-v3`), or any registered gymnasium id (e.g. `CartPole-v1`).
Options are keyword arguments (`parse_options` turns CLI `key=value` strings into them); an
unknown id, game or option raises `EnvSpecError` with a one-line message listing what is valid.
"""

from __future__ import annotations

from typing import Any

from envs import _quiet  # noqa: F401  (first: silences old gym's banner before anything imports it)
from envs.atari import make_atari_single_env, make_atari_vec_env
from envs.gym_envs import make_gym_env, make_gym_vec_env
from envs.ids import PROCGEN_GAMES, EnvSpecError, parse_env_id, parse_options
from envs.procgen_vec import ProcgenEnv, ProcgenVecEnv

__all__ = [
    "PROCGEN_GAMES",
    "EnvSpecError",
    "ProcgenVecEnv",
    "make_env",
    "make_vec_env",
    "parse_env_id",
    "parse_options",
]


def make_vec_env(env_id: str, n_envs: int = 1, seed: int | None = 0, **options) -> Any:
    """`n_envs` copies of `env_id` as an SB3 VecEnv with gymnasium spaces (typed ``Any``: each
    family's has its own methods, such as Procgen's states and level replacement).

    Procgen: a `ProcgenVecEnv`, obs uint8 (n, 64, 64, 3). Atari: obs uint8 (n, 84, 84, 4).
    Others: SB3's `make_vec_env` (DummyVecEnv; option `vec_env="subproc"` for SubprocVecEnv).
    Every env's last step of an episode carries Monitor's `info["episode"]`.

    :param seed: seed of the first reset (env i gets seed + i outside procgen); None: random
    """
    family, name = parse_env_id(env_id)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise EnvSpecError(f"n_envs must be a positive integer, got {n_envs!r}")
    if family == "procgen":
        return ProcgenVecEnv(name, n_envs, seed, **options)
    if family == "atari":
        return make_atari_vec_env(name, n_envs, seed, **options)
    return make_gym_vec_env(env_id, name, n_envs, seed, **options)


def make_env(env_id: str, seed: int | None = None, **options) -> Any:
    """One `env_id` env as a gymnasium Env, with the same observations as `make_vec_env`.

    :param seed: used by the first `reset()` called without a seed; None: random
    """
    family, name = parse_env_id(env_id)
    if family == "procgen":
        return ProcgenEnv(name, seed, **options)
    if family == "atari":
        return make_atari_single_env(name, seed, **options)
    return make_gym_env(env_id, name, seed, **options)
