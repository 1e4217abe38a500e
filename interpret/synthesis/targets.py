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
The named targets read the outputs through the view's answers (``action_values``,
``state_value``, ``action_log_probs``, ``action_scores``), never by their keys.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from agents.policy_view import Outputs, PolicyView
from interpret.core.errors import InterpretError

Target = Callable[[Outputs], torch.Tensor]


def soft_max(q: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.logsumexp(beta * q, dim=1) / beta


def soft_min(q: torch.Tensor, beta: float) -> torch.Tensor:
    return -torch.logsumexp(-beta * q, dim=1) / beta


def _value(view: PolicyView, outputs: Outputs) -> torch.Tensor:
    value = view.state_value(outputs)
    if value is None:
        raise InterpretError(f"this target needs a value or Q-values; outputs: {sorted(outputs)}")
    return value.reshape(-1)


def t_plus(view: PolicyView, outputs: Outputs, beta: float = 1.0) -> torch.Tensor:
    q = view.action_values(outputs)
    return -soft_min(q, beta) if q is not None else -_value(view, outputs)


def t_minus(view: PolicyView, outputs: Outputs, beta: float = 1.0) -> torch.Tensor:
    q = view.action_values(outputs)
    return soft_max(q, beta) if q is not None else _value(view, outputs)


def _preferences(view: PolicyView, outputs: Outputs) -> torch.Tensor | None:
    """(N, A) Q-values, else log pi(a | s), else None (continuous actions)."""
    q = view.action_values(outputs)
    return q if q is not None else view.action_log_probs(outputs)


def t_plus_minus(view: PolicyView, outputs: Outputs, beta: float = 1.0) -> torch.Tensor:
    scores = _preferences(view, outputs)
    if scores is None:
        raise InterpretError("T+- needs per-action Q-values or policy logits")
    return -(soft_max(scores, beta) - soft_min(scores, beta))


NAMED = {"T+": t_plus, "T-": t_minus, "T+-": t_plus_minus}


def action_target(view: PolicyView, action: int) -> Target:
    """Maximize ``view``'s preference for ``action``: its Q-value, its log-probability, or
    (continuous actions) its action score."""

    def energy(outputs: Outputs) -> torch.Tensor:
        scores = _preferences(view, outputs)
        if scores is None:
            scores = view.action_scores(outputs)
        scores = scores.reshape(len(scores), -1)
        if not 0 <= action < scores.shape[1]:
            raise InterpretError(f"action {action} out of range; the agent has {scores.shape[1]}")
        return -scores[:, action]

    return energy


def resolve_target(spec: str | Target, view: PolicyView, beta: float = 1.0) -> Target:
    """``T+``, ``T-``, ``T+-``, ``action:K`` (read through ``view``'s answers),
    ``package.module:function`` or a callable (both given the raw outputs dict)."""
    if callable(spec):
        return spec
    if spec in NAMED:
        named = NAMED[spec]
        return lambda out: named(view, out, beta)
    if spec.startswith("action:"):
        try:
            return action_target(view, int(spec.split(":", 1)[1]))
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
