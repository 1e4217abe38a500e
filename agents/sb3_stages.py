"""An SB3 policy as named stages: a shared trunk, then one branch per group of outputs.

``decompose(policy)`` -> ``(shared, branches)``: the stages every output depends on, then
the branches, each a chain of stages and a head mapping its last activation to its
outputs. An actor-critic with one MLP per output has two branches (``logits``/``mean`` from
the policy network, ``value`` from the value network); with separate features extractors the
extractors belong to the branches too; a DQN has one branch (``q``). A stage's ``name`` is the
layer name users see (ours: ``"2b"``; SB3's: its module path, e.g. ``features_extractor.cnn.0``);
an MLP's flattened input is the layer ``"observation"``.

``readers(layers, i)``: the parametrized module(s) reading stage ``i``'s output through
channel-wise modules only (what a weight edit at that layer projects).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import torch
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.architectures import ConvReLU, HWCFeatures, HWCInput, L2Pool2d, LinearReLU
from agents.policy_view import LayerReadersError, Outputs

OBSERVATION_LAYER = "observation"
# Modules that act on each channel separately, so a projection after them equals one before.
CHANNELWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Identity,
    nn.Flatten,
    nn.MaxPool2d,
    nn.AvgPool2d,
    L2Pool2d,
)


@dataclass(frozen=True)
class Stage:
    """One step of a chain: ``name`` as shown to users, ``path`` within the policy; ``listed``:
    offered as a layer (input scaling and an image trunk's flattening are not); ``short``: in
    a branch's own copy of one of our trunks, the trunk's name for it (``2b`` for
    ``pi_features_extractor.2b``)."""

    name: str
    path: str
    module: nn.Module
    listed: bool = True
    short: str | None = None


@dataclass(frozen=True)
class Branch:
    """Stages after the shared trunk and the ``head`` on their output; ``outputs``: the names
    the head returns; ``head_kernel``: (path, module) of the head's dense layer."""

    stages: list[Stage]
    head: Callable[[torch.Tensor], Outputs]
    outputs: tuple[str, ...]
    head_kernel: tuple[str, nn.Module]


def run_stages(stages: list[Stage], x: torch.Tensor) -> torch.Tensor:
    for stage in stages:
        x = stage.module(x)
    return x


def run_branches(branches: list[Branch], h: torch.Tensor) -> Outputs:
    """Every branch on the shared trunk's output ``h``, their outputs merged."""
    out: Outputs = {}
    for branch in branches:
        out.update(branch.head(run_stages(branch.stages, h)))
    return out


def _sequential_leaves(seq: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for name, child in seq.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            yield from _sequential_leaves(child, full)
        else:
            yield full, child


def _trunk(extractor: nn.Module, path: str, short_names: bool = True) -> list[Stage]:
    """Stages of an SB3 features extractor, in forward order."""
    if isinstance(extractor, HWCFeatures):  # ours: short names ("1a", "block1.res2", "fc1")
        return [
            Stage(
                name if short_names else f"{path}.{name}",
                f"{path}.net.{name}",
                m,
                listed=not isinstance(m, HWCInput | nn.Flatten),
                short=None if short_names else name,
            )
            for name, m in _sequential_leaves(extractor.net, "")
        ]
    if isinstance(extractor, NatureCNN):  # SB3's: forward is linear(cnn(x)); module paths
        parts = [
            *_sequential_leaves(extractor.cnn, "cnn"),
            *_sequential_leaves(extractor.linear, "linear"),
        ]
        return [
            Stage(f"{path}.{name}", f"{path}.{name}", m, not isinstance(m, nn.Flatten))
            for name, m in parts
        ]
    if isinstance(extractor, FlattenExtractor):  # an MLP's input: the observation itself
        name = OBSERVATION_LAYER if short_names else f"{path}.{OBSERVATION_LAYER}"
        return [Stage(name, f"{path}.flatten", extractor.flatten)]
    return [Stage(path, path, extractor)]


def _mlp_stages(net: nn.Module, path: str) -> list[Stage]:
    return [Stage(f"{path}.{name}", f"{path}.{name}", m) for name, m in _sequential_leaves(net, "")]


def decompose(policy: BasePolicy) -> tuple[list[Stage], list[Branch]]:
    """(shared stages, branches) of an SB3 actor-critic or DQN policy."""
    if isinstance(policy, DQNPolicy):
        q_layers = list(_sequential_leaves(policy.q_net.q_net, "q_net.q_net"))
        shared = _trunk(policy.q_net.features_extractor, "q_net.features_extractor")
        shared += [Stage(name, name, m) for name, m in q_layers[:-1]]
        last_name, last = q_layers[-1]
        return shared, [Branch([], lambda h: {"q": last(h)}, ("q",), (last_name, last))]
    if isinstance(policy, ActorCriticPolicy):
        return _actor_critic(policy)
    raise TypeError(f"unsupported policy class {type(policy).__name__}")


def _actor_critic(policy: ActorCriticPolicy) -> tuple[list[Stage], list[Branch]]:
    discrete = isinstance(policy.action_space, gym.spaces.Discrete)
    action_key = "logits" if discrete else "mean"

    def action_head(latent: torch.Tensor) -> Outputs:
        return {action_key: policy.action_net(latent)}

    def value_head(latent: torch.Tensor) -> Outputs:
        return {"value": policy.value_net(latent).squeeze(-1)}

    pi = _mlp_stages(policy.mlp_extractor.policy_net, "mlp_extractor.policy_net")
    vf = _mlp_stages(policy.mlp_extractor.value_net, "mlp_extractor.value_net")
    if policy.share_features_extractor:
        shared = _trunk(policy.features_extractor, "features_extractor")
    elif isinstance(policy.pi_features_extractor, FlattenExtractor) and isinstance(
        policy.vf_features_extractor, FlattenExtractor
    ):  # two copies of the same flattening: the observation is shared
        shared = _trunk(policy.pi_features_extractor, "pi_features_extractor")
    else:  # one extractor per output: no shared layer
        shared = []
        pi = _trunk(policy.pi_features_extractor, "pi_features_extractor", False) + pi
        vf = _trunk(policy.vf_features_extractor, "vf_features_extractor", False) + vf
    return shared, [
        Branch(pi, action_head, (action_key,), ("action_net", policy.action_net)),
        Branch(vf, value_head, ("value",), ("value_net", policy.value_net)),
    ]


def _kernel_of(module: nn.Module) -> tuple[str, nn.Module] | None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        return "", module
    if isinstance(module, ConvReLU):
        return "conv.", module.conv
    if isinstance(module, LinearReLU):
        return "linear.", module.linear
    return None


def first_kernel(stages: list[Stage], after: str) -> tuple[str, nn.Module] | None:
    """(weight name, module) of the first parametrized stage, walking channel-wise modules
    only; None if the chain ends first. ``after`` names the layer, for the error message."""
    for stage in stages:
        found = _kernel_of(stage.module)
        if found is not None:
            prefix, module = found
            return f"{stage.path}.{prefix}weight", module
        if not isinstance(stage.module, CHANNELWISE):
            raise LayerReadersError(
                f"the layer after {after!r} is {stage.name!r} ({type(stage.module).__name__}), "
                "which mixes channels before any kernel; edit a layer followed by a "
                "convolution or a dense layer"
            )
    return None


def branch_readers(branch: Branch, start: int, after: str) -> list[tuple[str, nn.Module]]:
    """Readers of stage ``start - 1``'s output inside ``branch`` (``start`` = 0: the trunk's)."""
    found = first_kernel(branch.stages[start:], after)
    if found is not None:
        return [found]
    path, module = branch.head_kernel
    if not isinstance(module, nn.Linear):
        raise LayerReadersError(f"the head layer {path!r} is not a dense layer")
    return [(f"{path}.weight", module)]
