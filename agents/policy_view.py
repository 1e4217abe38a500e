"""The one seam between agents and interpreters: ``PolicyView``.

Every interpreter takes a ``PolicyView`` and asks it everything it needs, so that none of
them branches on the algorithm; a new algorithm is one new adapter. The adapters:
``agents.inspectable.Inspectable`` (SB3 PPO and DQN) and ``world_model.view.WorldModelView``
(World Models). ``agents.load`` returns one of them; a type checker holds them to this
protocol (``tests/test_policy_view.py`` and ``make lint``'s mypy run).

Shapes: observations as the env gives them, (N, *obs_shape) (images HWC uint8); ``preprocess``
turns them into the network's input ``x``; ``outputs(x)`` is a dict of float32 tensors with the
batch axis first (``value`` (N,), ``logits`` or ``q`` (N, A), ...); activations at a layer are
(N, *layer_shape(layer)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

Outputs = dict[str, torch.Tensor]
Lower = Callable[[torch.Tensor], torch.Tensor]
Upper = Callable[[torch.Tensor], Outputs]


class L2Pool(Protocol):
    """L2 pooling with pool size = stride: sqrt(avgpool(x^2, kernel_size) + eps)."""

    kernel_size: int
    eps: float


class UnknownLayerError(ValueError):
    """A layer name that the policy does not have (the message lists the valid ones)."""


class LayerReadersError(ValueError):
    """A layer whose readers cannot be edited channel-wise (something mixing channels first)."""


class Actor(Protocol):
    """What playing needs (``agents.rollout``): a device, ``act`` and ``reset``. Every
    ``PolicyView`` is one; so is a wrapper that changes what a policy sees (synthesis's
    goggles)."""

    @property
    def device(self) -> torch.device: ...

    def act(
        self, obs: np.ndarray, deterministic: bool = False, generator: Any = None
    ) -> np.ndarray: ...

    def reset(self, rows: Any = None) -> None:
        """Forget the recurrent state (of ``rows`` only, if given)."""
        ...


class PolicyView(Actor, Protocol):
    """What every interpreter may ask of a trained policy (and an ``Actor``: it plays).

    Attributes:
        algo: a label for records and reports ("ppo", "dqn", "worldmodel"); never branched on.
        module: the torch module holding every weight (hooks, state dicts, edits).
        observation_space, action_space: the policy's gymnasium spaces.
        metadata: what the model recorded about its training (``env_id``, ``env_kwargs``, ...).
        source: the file or run directory it was loaded from (None for a live model).
        precision: "fp32" or "bf16" (forward passes under bf16 autocast, float32 results).
        score_kind: what ``action_scores`` are: "logits", "q", "mean" or "preactivation".
    """

    algo: str
    metadata: dict[str, Any]
    source: Path | None
    precision: str

    @property
    def module(self) -> nn.Module: ...

    @property
    def observation_space(self) -> gym.Space: ...

    @property
    def action_space(self) -> gym.Space: ...

    @property
    def recurrent(self) -> bool:
        """Whether actions depend on a state carried across ``act`` calls (then ``reset``)."""
        ...

    @property
    def state(self) -> Any:
        """The recurrent state the next ``act`` starts from (None: an episode's start, and
        always None for a feed-forward policy); ``outputs(x, state)`` takes it."""
        ...

    @property
    def score_kind(self) -> str: ...

    @property
    def relu_modules(self) -> Sequence[nn.Module]:
        """ReLU modules the forward pass runs that are not children of ``module`` (for guided
        backprop's overrides); empty when every ReLU is a child module."""
        ...

    # -- layers -----------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """Names of the layers an interpreter may read, in forward order."""
        ...

    def layer_module(self, layer: str) -> nn.Module:
        """The module whose output is ``layer``'s activation (for forward hooks)."""
        ...

    def layer_path(self, layer: str) -> str:
        """``layer``'s module path inside ``module``."""
        ...

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """One observation's activation shape at ``layer``, e.g. (32, 32, 32) for ``2b``."""
        ...

    def layer_for(self, layer: str, output: str | None = None) -> str:
        """The listed layer that ``layer`` names when read for the output ``output`` (an
        ``outputs`` key; None: any): ``layer`` itself when listed; where each output has its
        own copy of a trunk (separate policy and value trunks), the trunk's name for a layer
        (``2b``) picks the copy computing ``output``. Raises ``UnknownLayerError``."""
        ...

    def default_layer(self, output: str | None = None) -> str:
        """The layer interpreters read when none is given (the paper's ``2b`` for ours), for
        attributing ``output`` (default: the default target's output)."""
        ...

    def default_target(self) -> str:
        """The output attributed when none is given: "value" (actor-critic), "max-q" (DQN),
        or a controller's action preference (World Models)."""
        ...

    def readers(self, layer: str) -> list[tuple[str, nn.Module]]:
        """[(state-dict weight name, module)] of the convolution or dense layer(s) reading
        ``layer`` through channel-wise modules only: what an edit at ``layer`` projects.
        Raises ``LayerReadersError`` if something mixing channels comes first."""
        ...

    # -- computation ------------------------------------------------------------------------
    def accepts_observations(self, shape: tuple[int, ...]) -> bool:
        """Whether env observations of ``shape`` (without the batch axis) can be fed in."""
        ...

    def preprocess(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw observations (N, *obs_shape) as the env gives them -> the network's input."""
        ...

    def outputs(self, x: torch.Tensor, state: Any = None) -> Outputs:
        """Preprocessed batch -> named outputs (float32), at recurrent ``state`` (None: an
        episode's start; ignored by feed-forward policies)."""
        ...

    def split(self, layer: str) -> tuple[Lower, Upper]:
        """(lower, upper): ``lower(x)`` is ``layer``'s activation and ``upper(lower(x))`` equals
        the outputs that ``layer`` determines (all of them for a shared layer)."""
        ...

    def split_pool(self, layer: str) -> tuple[L2Pool, Upper] | None:
        """(pool, rest) when the part above ``layer`` starts with L2 pooling, so that
        ``rest(pool(a))`` equals ``split(layer)``'s ``upper(a)`` (integrated gradients then
        integrate at the pooled size); None otherwise."""
        ...

    def split_is_complete(self, layer: str) -> bool:
        """Whether ``split(layer)``'s upper part gives every output of ``outputs`` (a layer all
        of them depend on only through it); False for a branch's layer, or one ``split`` does
        not cut at."""
        ...

    def action_scores(self, out: Outputs) -> torch.Tensor:
        """(N, A) per-action preferences whose argmax is the greedy action (logits, Q-values)
        or, for continuous actions, the action before clipping or squashing."""
        ...

    def action_values(self, out: Outputs) -> torch.Tensor | None:
        """(N, A) per-action values (Q) when the policy has them, else None."""
        ...

    def state_value(self, out: Outputs) -> torch.Tensor | None:
        """(N,) the value of the state: the critic's, or max Q; None when there is none."""
        ...

    def action_log_probs(self, out: Outputs) -> torch.Tensor | None:
        """(N, A) log pi(a | s) of a stochastic discrete policy (log-softmax of its logits);
        None for Q-networks and continuous actions."""
        ...

    def output_roles(self) -> dict[str, str]:
        """{``outputs`` key: role} of the outputs interpreters read by meaning: "logits" (N, A)
        of a discrete policy, "q" (N, A) Q-values, "value" (N,) the critic's; others: none."""
        ...

    # -- acting and saving ------------------------------------------------------------------
    def act(
        self,
        obs: np.ndarray | torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions (N,) or (N, A) for raw observations, random draws from ``generator``."""
        ...

    def reset(self, rows: Sequence[int] | np.ndarray | None = None) -> None:
        """Forget the recurrent state (of ``rows`` only, if given); a no-op when feed-forward."""
        ...

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the policy with its current weights in its own format; ``agents.load`` reads
        it back."""
        ...
