"""Target functions: the agent's outputs dict -> an energy (N,) that latent optimization
minimizes (Rupprecht et al., Section 2.3).

With Q-values q (N, A) and sharpness ``beta``, smax(q) = logsumexp(beta q) / beta and
smin(q) = -logsumexp(-beta q) / beta:
- ``T+``: states valued highly whatever the agent does: energy -smin(q). Actor-critic: -value.
- ``T-``: states where even the best action is bad: energy smax(q). Actor-critic: value.
- ``T+-``: one action much better than another: energy -(smax(q) - smin(q)). Actor-critic:
  the same on the log-probabilities.
- ``action:K``: energy -q[K]; actor-critic: -log pi(K); a continuous "action"/"mean": -a[K];
  World Models: -log softmax(scores)[K] (discrete), or -preactivation[K] (continuous: the
  controller's output before its monotone tanh mapping, whose clamps would stop gradients).
  T+ and T- need a value or Q-values, which a World Models controller does not have.
Any callable ``outputs -> (N,)`` is a target too (``module:function`` on the command line).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from interpret.core.errors import InterpretError

Target = Callable[[dict[str, torch.Tensor]], torch.Tensor]
NAMES = ("T+", "T-", "T+-")


def soft_max(q: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.logsumexp(beta * q, dim=1) / beta


def soft_min(q: torch.Tensor, beta: float) -> torch.Tensor:
    return -torch.logsumexp(-beta * q, dim=1) / beta


def t_plus(outputs: dict[str, torch.Tensor], beta: float = 1.0) -> torch.Tensor:
    if "q" in outputs:
        return -soft_min(outputs["q"], beta)
    return -_value(outputs)


def t_minus(outputs: dict[str, torch.Tensor], beta: float = 1.0) -> torch.Tensor:
    if "q" in outputs:
        return soft_max(outputs["q"], beta)
    return _value(outputs)


def t_plus_minus(outputs: dict[str, torch.Tensor], beta: float = 1.0) -> torch.Tensor:
    if "q" in outputs:
        scores = outputs["q"]
    elif "logits" in outputs:
        scores = torch.log_softmax(outputs["logits"], dim=1)
    else:
        raise InterpretError("T+- needs per-action Q-values or policy logits")
    return -(soft_max(scores, beta) - soft_min(scores, beta))


def action_target(action: int) -> Target:
    """Maximize the agent's preference for ``action``."""

    def energy(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if "q" in outputs:
            scores = outputs["q"]
        elif "logits" in outputs:
            scores = torch.log_softmax(outputs["logits"], dim=1)
        elif "preactivation" in outputs:
            scores = outputs["preactivation"]
        elif "action" in outputs or "mean" in outputs:
            scores = outputs.get("action", outputs.get("mean"))
        else:
            raise InterpretError("action targets need Q-values, logits or an action output")
        scores = scores.reshape(len(scores), -1)
        if not 0 <= action < scores.shape[1]:
            raise InterpretError(f"action {action} out of range; the agent has {scores.shape[1]}")
        return -scores[:, action]

    return energy


def _value(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    if "value" not in outputs:
        raise InterpretError(f"this target needs a value or Q-values; outputs: {sorted(outputs)}")
    return outputs["value"].reshape(-1)


def resolve_target(spec: str | Target, beta: float = 1.0) -> Target:
    """``T+``, ``T-``, ``T+-``, ``action:K``, ``package.module:function`` or a callable."""
    if callable(spec):
        return spec
    if spec == "T+":
        return lambda out: t_plus(out, beta)
    if spec == "T-":
        return lambda out: t_minus(out, beta)
    if spec == "T+-":
        return lambda out: t_plus_minus(out, beta)
    if spec.startswith("action:"):
        try:
            return action_target(int(spec.split(":", 1)[1]))
        except ValueError:
            raise InterpretError(f"bad target {spec!r}: expected action:K, K an integer") from None
    if ":" in spec:
        module_name, _, name = spec.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as err:
            raise InterpretError(f"cannot import target {spec!r}: {err}") from None
        if not callable(function):
            raise InterpretError(f"target {spec!r} is not callable")
        return function
    raise InterpretError(
        f"unknown target {spec!r}; valid: T+, T-, T+-, action:K, package.module:function"
    )
