"""`box2d:<id>` and registered gymnasium ids: `gymnasium.make(id, **options)`, monitored."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import gymnasium
from gymnasium.envs.registration import load_env_creator
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from envs.ids import EnvSpecError, bad_value, check_option_names, gym_registry

MAKE_OPTIONS = ("max_episode_steps", "disable_env_checker")  # taken by gymnasium.make itself
VEC_ENV_CLASSES = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}


class SeedFirstReset(gymnasium.Wrapper):
    """Use `seed` for the first `reset()` called without one (gymnasium seeds at reset)."""

    def __init__(self, env: gymnasium.Env, seed: int | None) -> None:
        super().__init__(env)
        self._first_seed = seed
        env.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        return self.env.reset(seed=seed, options=options)


def vec_env_class(env_id: str, options: dict) -> type[VecEnv]:
    """Pop option `vec_env` ("dummy", the default, or "subproc") and return SB3's class."""
    name = options.pop("vec_env", "dummy")
    if name not in VEC_ENV_CLASSES:
        raise bad_value(env_id, "vec_env", name, "dummy or subproc")
    return VEC_ENV_CLASSES[name]


def _creator(name: str) -> Any:
    """The class or function registered for gymnasium id `name`."""
    entry_point = gym_registry()[name].entry_point
    return entry_point if callable(entry_point) else load_env_creator(entry_point)


def env_option_names(name: str) -> list[str] | None:
    """Keyword options `gymnasium.make(name, ...)` accepts, or None if it takes any."""
    try:
        params = inspect.signature(_creator(name)).parameters.values()
    except (TypeError, ValueError, ImportError, AttributeError):
        return None  # entry point not introspectable: let gymnasium judge
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name != "self"] + list(MAKE_OPTIONS)


def check_gym_options(env_id: str, name: str, options: dict, extra: tuple[str, ...] = ()) -> None:
    """Raise EnvSpecError for an option `gymnasium.make(name)` would not take."""
    valid = env_option_names(name)
    if valid is not None:
        check_option_names(env_id, options, [*valid, *extra])


def make_gym(name: str, **kwargs: Any) -> gymnasium.Env:
    """`gymnasium.make` with render_mode="rgb_array" where supported (VecEnv.render uses it).

    Module-level and registering ALE ids first, so it also works in a SubprocVecEnv worker.
    """
    gym_registry()
    if "render_mode" not in kwargs and "rgb_array" in _render_modes(name):
        kwargs["render_mode"] = "rgb_array"
    try:
        return gymnasium.make(name, **kwargs)
    except TypeError as exc:  # an option the env's constructor does not take
        raise EnvSpecError(f"bad options for {name}: {exc}") from None


def _render_modes(name: str) -> list[str]:
    try:
        creator = _creator(name)
    except (ImportError, AttributeError, ValueError):
        return []
    return list(getattr(creator, "metadata", {}).get("render_modes", []))


def make_gym_vec_env(
    env_id: str, name: str, n_envs: int, seed: int | None, **options: Any
) -> VecEnv:
    """SB3 `make_vec_env` over `gymnasium.make(name, **options)`; Monitor adds `episode` infos."""
    check_gym_options(env_id, name, options, extra=("vec_env",))
    vec_cls = vec_env_class(env_id, options)
    return sb3_make_vec_env(
        functools.partial(make_gym, name),
        n_envs=n_envs,
        seed=seed,
        env_kwargs=options,
        vec_env_cls=vec_cls,
    )


def make_gym_env(env_id: str, name: str, seed: int | None, **options: Any) -> gymnasium.Env:
    """`gymnasium.make(name, **options)` under SB3's Monitor; `seed` applies at the first reset."""
    check_gym_options(env_id, name, options)
    return SeedFirstReset(Monitor(make_gym(name, **options)), seed)
