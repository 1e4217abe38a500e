"""Hyperparameter presets: the Procgen paper's PPO, and RL Zoo's Atari PPO and DQN.

Values are SB3 keyword arguments, plus ``n_envs`` and ``normalize_reward`` (VecNormalize on
rewards only). A string ``"lin_<x>"`` is a schedule decaying linearly from x to 0.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.utils import LinearSchedule

# Cobbe et al. (2020), Table 2: PPO on Procgen.
PROCGEN_PPO: dict[str, Any] = {
    "n_envs": 64,
    "n_steps": 256,
    "batch_size": 2048,  # 64 * 256 / 8 minibatches
    "n_epochs": 3,
    "learning_rate": 5e-4,
    "gamma": 0.999,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "clip_range_vf": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_reward": True,
}

# RL Baselines3 Zoo, hyperparams/ppo.yml, atari.
ATARI_PPO: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 128,
    "batch_size": 256,
    "n_epochs": 4,
    "learning_rate": "lin_2.5e-4",
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": "lin_0.1",
    "clip_range_vf": None,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_reward": False,
}

# RL Baselines3 Zoo, hyperparams/dqn.yml, atari.
ATARI_DQN: dict[str, Any] = {
    "n_envs": 1,
    "buffer_size": 100_000,
    "learning_rate": 1e-4,
    "batch_size": 32,
    "learning_starts": 100_000,
    "target_update_interval": 1000,
    "train_freq": 4,
    "gradient_steps": 1,
    "exploration_fraction": 0.1,
    "exploration_final_eps": 0.01,
    "gamma": 0.99,
    "optimize_memory_usage": False,
    "normalize_reward": False,
}

# SB3's own defaults, for any other environment.
DEFAULT_PPO: dict[str, Any] = {
    "n_envs": 8,
    "n_steps": 2048,
    "batch_size": 64,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "clip_range_vf": None,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_reward": False,
}
DEFAULT_DQN: dict[str, Any] = {
    "n_envs": 1,
    "buffer_size": 1_000_000,
    "learning_rate": 1e-4,
    "batch_size": 32,
    "learning_starts": 100,
    "target_update_interval": 10_000,
    "train_freq": 4,
    "gradient_steps": 1,
    "exploration_fraction": 0.1,
    "exploration_final_eps": 0.05,
    "gamma": 0.99,
    "optimize_memory_usage": False,
    "normalize_reward": False,
}

PRESETS: dict[str, dict[str, Any]] = {
    "procgen-ppo": PROCGEN_PPO,
    "atari-ppo": ATARI_PPO,
    "atari-dqn": ATARI_DQN,
    "default-ppo": DEFAULT_PPO,
    "default-dqn": DEFAULT_DQN,
}


def default_preset(algo: str, env_family: str) -> str:
    """Preset name for an algorithm ('ppo'/'dqn') and env family ('procgen', 'atari', ...)."""
    if env_family in ("procgen", "atari") and f"{env_family}-{algo}" in PRESETS:
        return f"{env_family}-{algo}"
    return f"default-{algo}"


def default_arch(env_family: str) -> str:
    """The architecture a family trains with when ``--arch`` is not given."""
    return "impala" if env_family == "procgen" else "nature"


def resolve_schedule(value: Any) -> Any:
    """'lin_<x>' -> LinearSchedule(x -> 0); anything else unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value
