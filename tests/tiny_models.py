"""Tiny real SB3 models (ours and plain SB3, PPO and DQN) for tests: a few training steps each.

``MODELS[name]()`` builds one; ``saved_model(name, directory)`` trains 32 steps and saves it.
"""

from pathlib import Path

import stable_baselines3 as sb3

import envs
from agents.algorithms import DQN, PPO
from agents.policies import HWCActorCriticPolicy, HWCDQNPolicy

COINRUN = "procgen:coinrun"


def procgen_env(n=2):
    return envs.make_vec_env(COINRUN, n, 0, distribution_mode="easy")


def pong_env(n=1):
    return envs.make_vec_env("atari:Pong", n, 0)


def ours_ppo(arch, separate_trunks=False):
    """``separate_trunks``: the value has its own copy of the trunk (``separate_value_trunk``)."""
    kwargs = {"share_features_extractor": False} if separate_trunks else {}
    return PPO(
        HWCActorCriticPolicy,
        procgen_env(),
        policy_kwargs={"arch": arch, **kwargs},
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
    )


def ours_dqn():
    return DQN(
        HWCDQNPolicy,
        pong_env(),
        policy_kwargs={"arch": "nature"},
        buffer_size=64,
        learning_starts=8,
        train_freq=4,
        batch_size=8,
        seed=0,
    )


def plain_ppo_cnn():
    return sb3.PPO("CnnPolicy", procgen_env(), n_steps=16, batch_size=16, n_epochs=1, seed=0)


def plain_dqn_cnn():
    return sb3.DQN("CnnPolicy", pong_env(), buffer_size=64, learning_starts=8, batch_size=8, seed=0)


def plain_ppo_mlp():
    return sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0)


def plain_dqn_mlp():
    return sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=8, batch_size=8, seed=0)


def plain_ppo_continuous():
    return sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0)


MODELS = {
    "ours-ppo-interpretable": lambda: ours_ppo("interpretable"),
    "ours-ppo-interpretable-separate": lambda: ours_ppo("interpretable", separate_trunks=True),
    "ours-ppo-impala": lambda: ours_ppo("impala"),
    "ours-ppo-nature": lambda: ours_ppo("nature"),
    "ours-dqn-nature": ours_dqn,
    "plain-ppo-cnn": plain_ppo_cnn,
    "plain-dqn-cnn": plain_dqn_cnn,
    "plain-ppo-mlp": plain_ppo_mlp,
    "plain-dqn-mlp": plain_dqn_mlp,
    "plain-ppo-continuous": plain_ppo_continuous,
}


def untrained_model(name: str, directory: Path) -> Path:
    """The path of ``MODELS[name]`` saved as built (untrained) to ``directory/model.zip``."""
    path = Path(directory) / "model.zip"
    model = MODELS[name]()
    model.save(path)
    model.get_env().close()
    return path


def saved_model(name: str, directory: Path):
    """(trained SB3 model, path of its saved zip) after 32 real training steps."""
    model = MODELS[name]()
    model.learn(32)
    path = Path(directory) / "model.zip"
    model.save(path)
    return model, path


def coinrun_runner(name: str, directory: Path, jump_right: float = 0.6, right: float = 0.3):
    """(model, path) of a tiny saved CoinRun PPO whose policy ignores the screen: jump right
    with probability `jump_right`, run right with `right`, any other action with the rest.
    Its CoinRun episodes end within ~30-60 steps (coin or hazard), which keeps audits short;
    greedy, it always jumps right."""
    import numpy as np
    import torch

    model, path = saved_model(name, directory)
    probs = np.full(15, (1.0 - jump_right - right) / 13)
    probs[8], probs[7] = jump_right, right  # procgen's combos: 7 RIGHT, 8 RIGHT+UP
    with torch.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(torch.as_tensor(np.log(probs)))
    model.save(path)
    return model, path
