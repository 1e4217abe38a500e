"""The inspectable view of a trained policy: the one object every interpreter takes.

A policy is decomposed into a chain of named stages (its shared trunk) and a head that maps
the trunk's output to named outputs (``value``/``logits`` for actor-critics, ``q`` for
Q-networks). ``split(layer)`` cuts the chain after a stage, so that ``upper(lower(x))`` equals
``outputs(x)`` and attribution from a hidden layer runs the upper part only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.architectures import HWCFeatures, HWCInput
from agents.precision import autocast

Outputs = dict[str, torch.Tensor]


class UnknownLayerError(ValueError):
    """A layer name that the policy does not have."""


@dataclass(frozen=True)
class Stage:
    """One step of the trunk: ``name`` as shown to users, ``path`` within ``Inspectable.module``."""

    name: str
    path: str
    module: nn.Module

    @property
    def listed(self) -> bool:
        """Whether it is offered as a layer (input scaling and flattening are not)."""
        return not isinstance(self.module, HWCInput | nn.Flatten)


def _sequential_leaves(seq: nn.Sequential, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for name, child in seq.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, nn.Sequential):
            yield from _sequential_leaves(child, full)
        else:
            yield full, child


def _extractor_stages(extractor: nn.Module, path: str) -> list[Stage]:
    """Stages of an SB3 features extractor, in forward order."""
    if isinstance(extractor, HWCFeatures):  # ours: short names ("1a", "block1.res2", "fc1")
        return [
            Stage(name, f"{path}.net.{name}", m)
            for name, m in _sequential_leaves(extractor.net, "")
        ]
    if isinstance(extractor, NatureCNN):  # SB3's: forward is linear(cnn(x)); module paths
        parts = [
            *_sequential_leaves(extractor.cnn, "cnn"),
            *_sequential_leaves(extractor.linear, "linear"),
        ]
        return [Stage(f"{path}.{name}", f"{path}.{name}", m) for name, m in parts]
    if isinstance(extractor, FlattenExtractor):
        return [Stage(f"{path}.flatten", f"{path}.flatten", extractor.flatten)]
    return [Stage(path, path, extractor)]


def _decompose(policy: BasePolicy) -> tuple[list[Stage], Callable[[torch.Tensor], Outputs]]:
    """(trunk stages, head) for an SB3 actor-critic or DQN policy."""
    if isinstance(policy, DQNPolicy):
        q_layers = list(_sequential_leaves(policy.q_net.q_net, "q_net.q_net"))
        stages = _extractor_stages(policy.q_net.features_extractor, "q_net.features_extractor")
        stages += [Stage(name, name, m) for name, m in q_layers[:-1]]
        last = q_layers[-1][1]
        return stages, lambda h: {"q": last(h)}
    if isinstance(policy, ActorCriticPolicy):
        if policy.share_features_extractor:
            stages = _extractor_stages(policy.features_extractor, "features_extractor")
            return stages, lambda f: _actor_critic_head(policy, policy.mlp_extractor(f))
        # Separate trunks for policy and value: no single hidden layer determines both outputs.
        return [], lambda x: _actor_critic_head(policy, _separate_latents(policy, x))
    raise TypeError(f"unsupported policy class {type(policy).__name__}")


def _separate_latents(policy: ActorCriticPolicy, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    pi_features = policy.pi_features_extractor(x)
    vf_features = policy.vf_features_extractor(x)
    return policy.mlp_extractor.forward_actor(pi_features), policy.mlp_extractor.forward_critic(
        vf_features
    )


def _actor_critic_head(policy: ActorCriticPolicy, latents: tuple[torch.Tensor, ...]) -> Outputs:
    latent_pi, latent_vf = latents
    value = policy.value_net(latent_vf).squeeze(-1)
    if isinstance(policy.action_space, gym.spaces.Discrete):
        return {"value": value, "logits": policy.action_net(latent_pi)}
    return {"value": value, "mean": policy.action_net(latent_pi)}


class _Chain:
    """Callable running a slice of the stages, optionally followed by the head; under bf16
    autocast when ``view.precision`` is "bf16", returning float32 either way."""

    def __init__(
        self,
        stages: list[Stage],
        head: Callable[[torch.Tensor], Outputs] | None,
        view: Inspectable,
    ):
        self.stages = stages
        self.head = head
        self.view = view

    def __call__(self, x: torch.Tensor) -> Any:
        if self.view.precision == "fp32":
            return self._run(x)
        with autocast(self.view.precision, x.device):
            out = self._run(x)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.float()

    def _run(self, x: torch.Tensor) -> Any:
        for stage in self.stages:
            x = stage.module(x)
        return self.head(x) if self.head is not None else x


class Inspectable:
    """Uniform view of a trained SB3 policy (PPO or DQN) for interpreters.

    Attributes:
        module: the torch module to hook (the SB3 policy); ``layer_module(name)`` finds a layer.
        algo: ``"ppo"`` or ``"dqn"``.
        observation_space, action_space: the policy's gymnasium spaces.
        metadata: what the model file recorded about its training (env id, arch, ...).
        precision: "fp32" (default) or "bf16": ``outputs``, ``split``'s parts and ``act`` then
            run under bf16 autocast and return float32 (see ``agents.precision``).
    """

    def __init__(
        self,
        policy: BasePolicy,
        algo: str,
        *,
        source: Path | None = None,
        metadata: dict[str, Any] | None = None,
        sb3_model: Any = None,
    ) -> None:
        self.module = policy
        self.algo = algo
        self.observation_space = policy.observation_space
        self.action_space = policy.action_space
        self.source = source
        self.metadata = dict(metadata or {})
        self._sb3_model = sb3_model
        trunks = [m for m in policy.modules() if isinstance(m, HWCFeatures)]
        self.precision = trunks[0].precision if trunks else "fp32"  # a live model's setting
        policy.set_training_mode(False)
        self._stages, self._head = _decompose(policy)

    @classmethod
    def from_model(cls, model: Any, metadata: dict[str, Any] | None = None) -> Inspectable:
        """View of a live SB3 ``PPO``/``DQN`` object (shares its weights)."""
        algo = "dqn" if isinstance(model.policy, DQNPolicy) else "ppo"
        return cls(model.policy, algo, metadata=metadata, sb3_model=model)

    @property
    def device(self) -> torch.device:
        return self.module.device

    # -- layers -----------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """Names of the hidden layers, in forward order."""
        return [s.name for s in self._stages if s.listed]

    def _index(self, layer: str) -> int:
        for i, stage in enumerate(self._stages):
            if stage.name == layer and stage.listed:
                return i
        raise UnknownLayerError(
            f"unknown layer {layer!r}; valid layers: {', '.join(self.layers())}"
        )

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is the activation called ``layer``."""
        return self._stages[self._index(layer)].module

    def layer_path(self, layer: str) -> str:
        """Module path of ``layer`` inside ``module`` (for ``get_submodule`` and state dicts)."""
        return self._stages[self._index(layer)].path

    # -- computation ------------------------------------------------------------------------
    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Batch of raw observations (N, *obs_shape) as the env gives them -> the trunk's input.

        An HWC image batch given to a policy trained on channel-first images (plain SB3 with
        ``VecTransposeImage``) is transposed here.
        """
        x = torch.as_tensor(obs, device=self.device)
        space_shape = self.observation_space.shape
        if tuple(x.shape[1:]) != tuple(space_shape):
            if x.dim() == 4 and tuple(x.shape[1:]) == (
                space_shape[1],
                space_shape[2],
                space_shape[0],
            ):
                x = x.permute(0, 3, 1, 2)
            else:
                raise ValueError(
                    f"observation batch of shape {tuple(x.shape)} does not fit the policy's "
                    f"observation space {tuple(space_shape)}"
                )
        return preprocess_obs(
            x, self.observation_space, normalize_images=self.module.normalize_images
        )

    def outputs(self, x: torch.Tensor) -> Outputs:
        """Preprocessed batch -> {"value": (N,), "logits": (N, A)} or {"q": (N, A)}."""
        return _Chain(self._stages, self._head, self)(x)

    def split(self, layer: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable]:
        """(lower, upper) with ``upper(lower(x)) == outputs(x)``; ``lower(x)`` is the activation
        of ``layer`` (e.g. (N, 32, 32, 32) for ``2b`` on 64x64 input)."""
        i = self._index(layer)
        lower = _Chain(self._stages[: i + 1], None, self)
        return lower, _Chain(self._stages[i + 1 :], self._head, self)

    @torch.no_grad()
    def act(
        self, obs: np.ndarray, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Actions (N,) for a batch of raw observations (N, *obs_shape)."""
        out = self.outputs(self.preprocess(obs))
        if "q" in out:
            return out["q"].argmax(dim=1).cpu().numpy()
        if "logits" in out:
            if deterministic:
                return out["logits"].argmax(dim=1).cpu().numpy()
            probs = torch.softmax(out["logits"], dim=1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(1).cpu().numpy()
        mean = out["mean"]
        if not deterministic:
            std = torch.exp(self.module.log_std).expand_as(mean)
            mean = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        space = self.action_space
        return np.clip(mean.cpu().numpy(), space.low, space.high)

    # -- saving -----------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Save in the agent's own format (an SB3 zip that plain ``PPO.load``/``DQN.load`` reads),
        with the current weights (edits included) and ``metadata`` merged into the record.

        Nothing pickled in the source file passes through: the copy keeps only what is read
        safely (`agents.sb3_zip.write_sb3_zip` with ``sanitize``); what it drops is listed in
        the record's ``"not_copied"``."""
        from agents.fileio import atomic_path
        from agents.sb3_zip import add_extra, write_sb3_zip

        path = Path(path)
        extra = {**self.metadata, **(metadata or {})}
        extra.pop("not_copied", None)  # the source's own notes; this copy gets its own
        if self.source is not None:
            state = {"policy": self.module.state_dict()}
            write_sb3_zip(self.source, path, state, extra=extra, sanitize=True)
        elif self._sb3_model is not None:
            with atomic_path(path, ".zip") as tmp:
                self._sb3_model.save(tmp)
                add_extra(tmp, extra)
        else:
            raise ValueError("this policy has no source model to save from")
        return path
