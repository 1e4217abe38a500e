"""Human names of an env's discrete actions: Procgen's button combos, ALE's meanings."""

from __future__ import annotations

import gymnasium as gym

from envs.ids import parse_env_id


def action_names(env_id: str, n_actions: int) -> list[str]:
    """The first `n_actions` action names of `env_id` ("0", "1", ... where it has none)."""
    family, name = parse_env_id(env_id)
    if family == "procgen":
        from procgen.env import ProcgenGym3Env

        combos = ProcgenGym3Env.get_combos(None)  # a constant table; needs no instance
        return ["+".join(c) or "NOOP" for c in combos][:n_actions]
    if family == "atari":
        from envs.atari import make_atari_single_env

        env = make_atari_single_env(name, 0)
        try:
            return list(env.unwrapped.get_action_meanings())[:n_actions]
        finally:
            env.close()
    return [str(i) for i in range(n_actions)]


def discrete_actions(space: gym.Space) -> int:
    """How many actions a discrete action space has (0 for any other space)."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else 0
