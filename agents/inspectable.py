"""``Inspectable``: the ``PolicyView`` adapter of SB3 PPO and DQN policies.

A policy is decomposed (``agents.sb3_stages``) into named stages: a shared trunk, then a
branch per group of outputs (``value``/``logits`` for actor-critics, ``q`` for Q-networks).
``split(layer)`` cuts after a stage, so that ``upper(lower(x))`` equals the outputs that layer
determines and attribution from a hidden layer runs the upper part only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.architectures import DEFAULT_LAYERS, HWCFeatures, L2Pool2d
from agents.policy_view import Lower, Outputs, UnknownLayerError, Upper
from agents.precision import autocast
from agents.rollout import sample_scores
from agents.sb3_stages import (
    Branch,
    Stage,
    branch_readers,
    decompose,
    first_kernel,
    run_branches,
    run_stages,
)
from agents.shapes import output_shape

__all__ = ["Inspectable", "Outputs", "UnknownLayerError"]


@dataclass(eq=False)  # hashed by identity, as a plain callable
class _Chain:
    """Callable running a slice of the stages, optionally followed by the head; under bf16
    autocast when ``view.precision`` is "bf16", returning float32 either way."""

    stages: list[Stage]
    head: Callable[[torch.Tensor], Outputs] | None
    view: Inspectable

    def __call__(self, x: torch.Tensor) -> Any:
        if self.view.precision == "fp32":
            return self._run(x)
        with autocast(self.view.precision, x.device):
            out = self._run(x)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.float()

    def _run(self, x: torch.Tensor) -> Any:
        x = run_stages(self.stages, x)
        return self.head(x) if self.head is not None else x


class Inspectable:
    """``PolicyView`` of a trained SB3 policy (PPO or DQN), plain SB3's or ours.

    Attributes:
        module: the torch module to hook (the SB3 policy); ``layer_module(name)`` finds a layer.
        algo: ``"ppo"`` or ``"dqn"`` (a label for records).
        observation_space, action_space: the policy's gymnasium spaces.
        metadata: what the model file recorded about its training (env id, arch, ...).
        precision: "fp32" (default) or "bf16": ``outputs``, ``split``'s parts and ``act`` then
            run under bf16 autocast and return float32 (see ``agents.precision``).
    """

    recurrent = False
    state = None
    relu_modules: Sequence[nn.Module] = ()

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
        self._arch = trunks[0].arch if trunks else None
        policy.set_training_mode(False)
        self._shared, self._branches = decompose(policy)
        self._heads = partial(run_branches, self._branches)  # the trunk's output -> outputs
        self.score_kind = next(k for k in ("q", "logits", "mean") if self._outputs_named(k))

    @classmethod
    def from_model(cls, model: Any, metadata: dict[str, Any] | None = None) -> Inspectable:
        """View of a live SB3 ``PPO``/``DQN`` object (shares its weights)."""
        algo = "dqn" if isinstance(model.policy, DQNPolicy) else "ppo"
        return cls(model.policy, algo, metadata=metadata, sb3_model=model)

    @property
    def device(self) -> torch.device:
        return self.module.device

    def _outputs_named(self, key: str) -> Branch | None:
        return next((b for b in self._branches if key in b.outputs), None)

    # -- layers -----------------------------------------------------------------------------
    def _listed(self) -> list[tuple[Branch | None, int, Stage]]:
        """(branch or None for the shared trunk, index in its chain, stage) of every layer."""
        found: list[tuple[Branch | None, int, Stage]] = [
            (None, i, s) for i, s in enumerate(self._shared) if s.listed
        ]
        for branch in self._branches:
            found += [(branch, i, s) for i, s in enumerate(branch.stages) if s.listed]
        return found

    def layers(self) -> list[str]:
        """Names of the layers, in forward order: the shared trunk's, then each branch's
        (an MLP's policy-network layers, then its value-network layers)."""
        return [stage.name for _, _, stage in self._listed()]

    def _find(self, layer: str) -> tuple[Branch | None, int, Stage]:
        for entry in self._listed():
            if entry[2].name == layer:
                return entry
        raise UnknownLayerError(
            f"unknown layer {layer!r}; valid layers: {', '.join(self.layers()) or 'none'}"
        )

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is the activation called ``layer``."""
        return self._find(layer)[2].module

    def layer_path(self, layer: str) -> str:
        """Module path of ``layer`` inside ``module`` (for ``get_submodule`` and state dicts)."""
        return self._find(layer)[2].path

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of one observation's activations at ``layer`` (e.g. (32, 32, 32) for 2b)."""
        lower, _ = self.split(layer)
        return output_shape(
            lambda x: lower(self.preprocess(x)), tuple(self.observation_space.shape or ())
        )

    def layer_for(self, layer: str, output: str | None = None) -> str:
        """``layer`` itself when listed; else, where the outputs have copies of our trunk of
        their own (``separate_value_trunk``), the copy of the trunk layer ``layer`` (``2b``) in
        the branch computing ``output`` (``vf_features_extractor.2b`` for ``"value"``,
        ``pi_features_extractor.2b`` for ``"logits"``), or the only copy."""
        listed = self._listed()
        if any(stage.name == layer for _, _, stage in listed):
            return layer
        copies = [(branch, stage.name) for branch, _, stage in listed if stage.short == layer]
        if output is not None:
            reader = self._outputs_named(output)
            copies = [(branch, name) for branch, name in copies if branch is reader]
        if len(copies) == 1:
            return copies[0][1]
        if copies:
            names = ", ".join(name for _, name in copies)
            raise UnknownLayerError(
                f"layer {layer!r} is in each output's own trunk ({names}); name one"
            )
        raise UnknownLayerError(
            f"unknown layer {layer!r}; valid layers: {', '.join(self.layers()) or 'none'}"
        )

    def default_layer(self, output: str | None = None) -> str:
        """The paper's ``2b`` for our interpretable CNN; else the last convolutional
        activation (before the trunk's flattening) of the trunk, or of the branch computing
        ``output`` (default: the default target's); an MLP's ``observation``."""
        output = output or ("q" if self.score_kind == "q" else "value")
        if self._arch in DEFAULT_LAYERS:
            return self.layer_for(DEFAULT_LAYERS[self._arch], output)
        branch = self._outputs_named(output)
        for chain in (self._shared, branch.stages if branch else []):
            flatten = [i for i, s in enumerate(chain) if isinstance(s.module, nn.Flatten)]
            before = [s for s in chain[: flatten[0]] if s.listed] if flatten else []
            if before:
                return before[-1].name
        return self.layers()[0]  # never empty: every features extractor has a listed stage

    def default_target(self) -> str:
        """``"max-q"`` for Q-networks, ``"value"`` for actor-critics."""
        return "max-q" if self.score_kind == "q" else "value"

    def readers(self, layer: str) -> list[tuple[str, nn.Module]]:
        """[(state-dict weight name, module)] of the kernel(s) reading ``layer`` through
        channel-wise modules only: the next convolution or dense layer, or after the trunk
        the first dense layer of each branch (policy and value, or the Q layer)."""
        branch, i, _ = self._find(layer)
        if branch is not None:
            return branch_readers(branch, i + 1, layer)
        found = first_kernel(self._shared[i + 1 :], layer)
        if found is not None:
            return [found]
        return [reader for b in self._branches for reader in branch_readers(b, 0, layer)]

    # -- computation ------------------------------------------------------------------------
    def accepts_observations(self, shape: tuple[int, ...]) -> bool:
        """The policy's observation shape, or an HWC image for a channels-first policy."""
        want = tuple(self.observation_space.shape or ())
        return shape == want or (len(want) == 3 and shape == (want[1], want[2], want[0]))

    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Batch of raw observations (N, *obs_shape) as the env gives them -> the trunk's input.

        An HWC image batch given to a policy trained on channel-first images (plain SB3 with
        ``VecTransposeImage``) is transposed here.
        """
        x = torch.as_tensor(obs, device=self.device)
        space_shape = tuple(self.observation_space.shape or ())
        if tuple(x.shape[1:]) != space_shape:
            if x.dim() == 4 and self.accepts_observations(tuple(x.shape[1:])):
                x = x.permute(0, 3, 1, 2)
            else:
                raise ValueError(
                    f"observation batch of shape {tuple(x.shape)} does not fit the policy's "
                    f"observation space {space_shape}"
                )
        normalize = self.module.normalize_images
        prepared = preprocess_obs(x, self.observation_space, normalize_images=normalize)
        # a dict only for Dict spaces, which SB3's MLP/CNN lack
        assert isinstance(prepared, torch.Tensor)
        return prepared

    def outputs(self, x: torch.Tensor, state: Any = None) -> Outputs:
        """Preprocessed batch -> {"value": (N,), "logits": (N, A)} or {"q": (N, A)}
        (``state`` is ignored: the policy is feed-forward)."""
        return _Chain(self._shared, self._heads, self)(x)

    def split(self, layer: str) -> tuple[Lower, Upper]:
        """(lower, upper): ``lower(x)`` is the activation of ``layer`` (e.g. (N, 32, 32, 32)
        for ``2b`` on 64x64 input); ``upper(lower(x))`` equals ``outputs(x)`` for a trunk
        layer, and the outputs of its branch for a branch layer (a policy-network layer of
        an MLP gives ``logits`` only, a value-network layer ``value``)."""
        branch, i, _ = self._find(layer)
        if branch is None:
            lower = _Chain(self._shared[: i + 1], None, self)
            return lower, _Chain(self._shared[i + 1 :], self._heads, self)
        lower = _Chain([*self._shared, *branch.stages[: i + 1]], None, self)
        return lower, _Chain(branch.stages[i + 1 :], branch.head, self)

    def split_pool(self, layer: str) -> tuple[L2Pool2d, Upper] | None:
        """(the L2 pooling that follows ``layer``, the rest of ``split(layer)``'s upper part),
        or None (no L2 pooling right after it: every architecture but the interpretable CNN)."""
        branch, i, _ = self._find(layer)
        above = self._shared[i + 1 :] if branch is None else branch.stages[i + 1 :]
        if not above or not isinstance(above[0].module, L2Pool2d):
            return None
        head = branch.head if branch is not None else self._heads
        return above[0].module, _Chain(above[1:], head, self)

    def split_is_complete(self, layer: str) -> bool:
        """True for a shared trunk's layer, False for a branch's (an MLP's policy or value
        network)."""
        return self._find(layer)[0] is None

    def action_scores(self, out: Outputs) -> torch.Tensor:
        """Logits or Q-values (N, A), or a Gaussian policy's mean (N, A)."""
        return out[self.score_kind]

    def action_values(self, out: Outputs) -> torch.Tensor | None:
        return out["q"] if self.score_kind == "q" else None

    def state_value(self, out: Outputs) -> torch.Tensor | None:
        """The critic's value, or max Q."""
        if self.score_kind == "q":
            return out["q"].max(dim=1).values
        return out.get("value")

    def action_log_probs(self, out: Outputs) -> torch.Tensor | None:
        """log-softmax of the logits; None for Q-networks and Gaussian policies."""
        return torch.log_softmax(out["logits"], dim=1) if self.score_kind == "logits" else None

    def output_roles(self) -> dict[str, str]:
        """SB3's keys name their roles: {"logits" or "q", and "value" if there is a critic}."""
        return {key: key for key in ("logits", "q", "value") if self._outputs_named(key)}

    def reset(self, rows: Sequence[int] | np.ndarray | None = None) -> None:
        """Nothing to forget: the policy is feed-forward."""

    @torch.no_grad()
    def act(
        self,
        obs: np.ndarray | torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions (N,) for a batch of raw observations (N, *obs_shape)."""
        out = self.outputs(self.preprocess(obs))
        mean = self.action_scores(out)
        actions = sample_scores(mean, self.score_kind, deterministic, generator)
        if actions is not None:
            return actions.cpu().numpy()
        if not deterministic:
            log_std = self.module.get_parameter("log_std")
            std = torch.exp(log_std).expand_as(mean)
            mean = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        space = self.action_space
        assert isinstance(space, gym.spaces.Box)
        return np.clip(mean.cpu().numpy(), space.low, space.high)

    # -- saving -----------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Save in the agent's own format (an SB3 zip that plain ``PPO.load``/``DQN.load`` reads),
        with the current weights (edits included) and ``metadata`` merged into the record.

        Nothing pickled in the source file passes through: the copy keeps only what is read
        safely (`agents.sb3_zip.write_sb3_zip` with ``sanitize``); what it drops is listed in
        the record's ``"not_copied"``."""
        from agents.sb3_zip import save_model, write_sb3_zip

        path = Path(path)
        extra = {**self.metadata, **(metadata or {})}
        extra.pop("not_copied", None)  # the source's own notes; this copy gets its own
        if self.source is not None:
            state = {"policy": self.module.state_dict()}
            write_sb3_zip(self.source, path, state, extra=extra, sanitize=True)
        elif self._sb3_model is not None:
            save_model(self._sb3_model, path, extra)
        else:
            raise ValueError("this policy has no source model to save from")
        return path
