"""Integrated gradients of a scalar output with respect to a hidden layer's activations.

Hilton et al. (2020), Appendix B: with ``V(x) = F(A(x))`` where ``A`` computes the layer's
activations, the attribution of an observation ``x`` is

    integral_{alpha=0}^{1} grad_a F(alpha * A(x)) d alpha  (pointwise *)  A(x),

a straight-line path from a zero baseline, approximated at alpha = 0.1, 0.2, ..., 1. It has the
layer's shape and sums to ``F(A(x)) - F(0)`` up to the integration error (completeness).

The points and weights are captum's ``riemann_right`` rule (``n_steps=10`` gives exactly those
alphas), integrated here in one batched pass of the part of the network *above* the layer
(``PolicyView.split``): the lower layers run once per observation instead of once per step,
the path points are written once into one channels-last batch (captum's ``IntegratedGradients``
concatenates scaled copies, converts their layout for the convolutions, and weights every
gradient separately), and F(A(x)) is read from the last point (alpha = 1) instead of a forward
pass of its own. Written by hand for that speed (3x+ captum's ``LayerIntegratedGradients``,
``bench/attribution.py``); the test suite checks it against captum and plain autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

from agents.policy_view import L2Pool, Outputs, PolicyView
from agents.precision import autocast, check_precision
from interpret.core.errors import InterpretError

Target = str | Callable[[Outputs], torch.Tensor]
# The output role each named target reads ("action:K" reads the view's action scores).
TARGET_ROLES = {
    "value": "value",
    "policy": "logits",
    "logit": "logits",
    "actions": "logits",
    "q": "q",
    "max-q": "q",
}
METHOD = "riemann_right"  # alphas 1/n, 2/n, ..., 1: the paper's 0.1, ..., 1 for n = 10


def target_function(
    view: PolicyView, target: Target, outputs_example: Outputs | None = None
) -> Callable:
    """A scalar output (N,) of the network's outputs dict, from a name or a callable.

    Names: ``"value"``; ``"logit:K"`` (policy logit K); ``"policy"`` (the log-probability of
    the greedy action, ``GreedyActionLogProb``); ``"actions:K,L,..."`` (the log-probability
    that the policy picks any of those actions, e.g. CoinRun's three jumps; names are turned
    into indices by ``expand_action_names``); ``"q:K"`` (Q-value of action K); ``"max-q"``;
    ``"action:K"`` (the view's action score K). The outputs are found by their roles
    (``view.output_roles``). A callable takes the outputs dict and returns a (N,) tensor.
    """
    if callable(target):
        return target
    name, _, index = str(target).partition(":")
    keys = {role: key for key, role in view.output_roles().items()}
    present = set(outputs_example) if outputs_example is not None else set(keys.values())

    def need(role: str) -> str:
        if keys.get(role) not in present:
            raise InterpretError(
                f"target {target!r} needs a {role!r} output; this policy has {sorted(present)}"
            )
        return keys[role]

    if name == "value" and not index:
        value = need(TARGET_ROLES[name])
        return lambda out: out[value]
    if name == "policy" and not index:
        return GreedyActionLogProb(need(TARGET_ROLES[name]))
    if name == "max-q" and not index:
        q = need(TARGET_ROLES[name])
        return lambda out: out[q].max(dim=1).values
    if name in ("logit", "q") and index.isdigit():
        key = need(TARGET_ROLES[name])
        k = int(index)
        if outputs_example is not None and k >= outputs_example[key].shape[1]:
            raise InterpretError(
                f"target {target!r}: index out of range (the policy has "
                f"{outputs_example[key].shape[1]} actions)"
            )
        return lambda out: out[key][:, k]
    if name == "actions" and _index_list(index):
        key = need(TARGET_ROLES[name])
        chosen = _index_list(index)
        if outputs_example is not None and max(chosen) >= outputs_example[key].shape[1]:
            raise InterpretError(
                f"target {target!r}: index out of range (the policy has "
                f"{outputs_example[key].shape[1]} actions)"
            )
        return lambda out: torch.logsumexp(
            torch.log_softmax(out[key].float(), dim=1)[:, chosen], dim=1
        )
    if name == "action" and index.isdigit():
        k = int(index)
        if outputs_example is not None and k >= view.action_scores(outputs_example).shape[1]:
            raise InterpretError(f"target {target!r}: index out of range")
        return lambda out: view.action_scores(out)[:, k]
    raise InterpretError(
        f"unknown target {target!r}; use value, policy, logit:K, actions:K,L,..., q:K, max-q "
        "or action:K"
    )


def _index_list(text: str) -> list[int]:
    """[2, 5, 8] for "2,5,8" (sorted, without repeats); [] unless every item is an index."""
    items = text.split(",")
    return sorted({int(i) for i in items}) if all(i.isdigit() for i in items) else []


def expand_action_names(target: Target | None, names: Sequence[str]) -> Target | None:
    """``"actions:UP"`` -> ``"actions:2,5,8"`` for Procgen's names (``envs.action_names``):
    an item names the action of that name (``RIGHT+UP``, ``NOOP``; any case) or, as a single
    button, every action that presses it (``UP``: LEFT+UP, UP and RIGHT+UP). Indices pass
    through; any other target is returned as it is."""
    if not isinstance(target, str) or not target.startswith("actions:"):
        return target
    wanted: set[int] = set()
    upper = [n.upper() for n in names]
    for item in target.partition(":")[2].split(","):
        if item.isdigit():
            wanted.add(int(item))
            continue
        key = item.strip().upper()
        matched = {k for k, n in enumerate(upper) if n == key or key in n.split("+")}
        if not key or not matched:
            raise InterpretError(
                f"target {target!r}: no action is named or presses {item!r}; the actions are "
                + ", ".join(f"{k} {n}" for k, n in enumerate(names))
            )
        wanted |= matched
    return "actions:" + ",".join(str(k) for k in sorted(wanted))


class GreedyActionLogProb:
    """The ``"policy"`` target: log pi(a* | .) with a* each observation's greedy action at its
    own activations, held fixed along the integration path, so that the attributions sum to
    log pi(a* | A(x)) - log pi(a* | baseline): the evidence for the action the policy prefers.

    ``choose(outputs)`` fixes a* from the outputs of the N observations; a call on the outputs
    of M = m N rows (m path points per observation, point-major, as the integration lays them
    out) or of one row (a shared baseline) returns (M,) or (N,) log-probabilities."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.actions: torch.Tensor | None = None
        self.__name__ = "policy"

    def choose(self, outputs: Outputs) -> None:
        self.actions = outputs[self.key].argmax(dim=1)

    def __call__(self, outputs: Outputs) -> torch.Tensor:
        if self.actions is None:
            raise InterpretError("the policy target needs its greedy actions chosen first")
        log_probs = torch.log_softmax(outputs[self.key].float(), dim=1)
        rows, count = len(log_probs), len(self.actions)
        if rows == 1:
            return log_probs[0, self.actions]
        if rows % count:
            raise InterpretError(f"{rows} rows of outputs for {count} chosen actions")
        actions = self.actions.to(log_probs.device).repeat(rows // count)
        return log_probs.gather(1, actions[:, None]).squeeze(1)


def target_output(view: PolicyView, target: Target | None) -> str | None:
    """The ``outputs`` key that the named ``target`` reads (``"value"`` for ``"value"``,
    the logits' key for ``"policy"`` and ``"logit:K"``, ...); None for a callable or a role
    the view does not name (then any layer serves)."""
    if target is None:
        target = view.default_target()
    if callable(target):
        return None
    keys = {role: key for key, role in view.output_roles().items()}
    return keys.get(TARGET_ROLES.get(str(target).partition(":")[0], view.score_kind))


@dataclass
class LayerAttribution:
    """Integrated gradients for a batch of observations.

    Attributes:
        layer: the hidden layer's name.
        target: the attributed output (a name, or the callable's name).
        attributions: (N, *layer_shape) float32, e.g. (N, 32, 32, 32) for ``2b``; sums to
            ``outputs - baseline_outputs`` per observation up to ``completeness_error``.
        activations: (N, *layer_shape) float32, the layer's activations A(x).
        outputs: (N,) float32, F(A(x)), the target's value.
        baseline_outputs: (N,) float32, F(baseline), F(0) by default.
        completeness_error: (N,) float32, sum(attributions) - (outputs - baseline_outputs).
        alphas: the integration points used.
    """

    layer: str
    target: str
    attributions: np.ndarray
    activations: np.ndarray
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    completeness_error: np.ndarray
    alphas: list[float]

    @property
    def max_relative_error(self) -> float:
        """max |completeness error| / max |F(a) - F(baseline)| over the batch."""
        scale = float(np.abs(self.outputs - self.baseline_outputs).max())
        return float(np.abs(self.completeness_error).max()) / max(scale, 1e-12)

    @classmethod
    def concatenate(cls, parts: Sequence[LayerAttribution]) -> LayerAttribution:
        """One attribution of all `parts`' observations (of one layer, target and alphas)."""
        names = ("attributions", "activations", "outputs", "baseline_outputs", "completeness_error")
        arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in names}
        return replace(parts[0], **arrays)


class HiddenLayerIntegratedGradients:
    """``HiddenLayerIntegratedGradients(view, "2b").attribute(obs)`` -> ``LayerAttribution``.

    :param view: any policy ``agents.load`` returns
    :param layer: one of ``view.layers()``
    :param target: what to attribute (see ``target_function``); default value, or max-Q
    :param n_steps: integration points (alpha = 1/n, ..., 1)
    :param precision: ``"fp32"`` or ``"bf16"`` (the network under bfloat16 autocast; the path
        points, gradients and their sum stay float32)
    """

    def __init__(
        self,
        view: PolicyView,
        layer: str,
        target: Target | None = None,
        n_steps: int = 10,
        precision: str = "fp32",
    ) -> None:
        if n_steps < 1:
            raise InterpretError(f"n_steps must be positive, got {n_steps}")
        try:
            self.precision = check_precision(precision)
        except ValueError as e:
            raise InterpretError(str(e)) from None
        self.view = view
        self.layer = layer
        self.lower, self.upper = view.split(layer)  # raises UnknownLayerError
        self.target = view.default_target() if target is None else target
        self.target_name = self.target if isinstance(self.target, str) else _name(self.target)
        self.n_steps = n_steps
        self._fn: Callable | None = None

    @property
    def alphas(self) -> list[float]:
        return [(i + 1) / self.n_steps for i in range(self.n_steps)]

    def _forward(self, activations: torch.Tensor) -> torch.Tensor:
        """F of a batch of layer activations, (N,) float32."""
        assert self._fn is not None
        with autocast(self.precision, activations.device):
            return self._fn(self.upper(activations)).float()

    def attribute(
        self,
        observations: np.ndarray,
        *,
        batch_size: int = 64,
        baseline: torch.Tensor | None = None,
    ) -> LayerAttribution:
        """Attributions for raw observations (N, *obs_shape) as the env gives them.

        :param batch_size: observations per batched pass (each runs ``n_steps`` times as many
            upper-network evaluations in one batch)
        :param baseline: the path's starting point in activation space, (1, *layer_shape) or
            (N, *layer_shape); zero (the paper's choice) when None
        """
        observations = np.asarray(observations)
        if len(observations) == 0:
            raise InterpretError("no observations to attribute")
        batches = []
        for start in range(0, len(observations), batch_size):
            chunk = observations[start : start + batch_size]
            base = None
            if baseline is not None:
                base = baseline if baseline.shape[0] == 1 else baseline[start : start + len(chunk)]
            batches.append(self._attribute_batch(chunk, base))
        return LayerAttribution.concatenate(batches)

    def _attribute_batch(
        self, observations: np.ndarray, baseline: torch.Tensor | None
    ) -> LayerAttribution:
        x = self.view.preprocess(observations)
        with torch.no_grad(), autocast(self.precision, x.device):
            activations = self.lower(x).float()
        if self._fn is None:
            with torch.no_grad(), autocast(self.precision, x.device):
                self._fn = target_function(self.view, self.target, self.upper(activations[:1]))
        if isinstance(self._fn, GreedyActionLogProb):
            with torch.no_grad(), autocast(self.precision, x.device):
                self._fn.choose(self.upper(activations))
        if baseline is not None:
            baseline = baseline.to(activations)
        attributions, outputs = self._integrate(activations, baseline)
        with torch.no_grad():
            base = torch.zeros_like(activations[:1]) if baseline is None else baseline
            base_outputs = self._forward(base).expand_as(outputs)  # once if shared
        # Completeness (captum's convergence delta, without its two extra forward passes).
        delta = attributions.flatten(1).sum(1) - (outputs - base_outputs)
        return LayerAttribution(
            layer=self.layer,
            target=self.target_name,
            attributions=attributions.cpu().numpy(),
            activations=activations.cpu().numpy(),
            outputs=outputs.cpu().numpy(),
            baseline_outputs=base_outputs.cpu().numpy(),
            completeness_error=delta.cpu().numpy(),
            alphas=self.alphas,
        )

    def _integrate(
        self, a: torch.Tensor, baseline: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(attributions like `a`, F(a) (N,)) along baseline + alpha (a - baseline).

        All n * N path points go through the upper network in one batch, alpha-major
        ((n, N, ...) viewed as (n N, ...)), in the layout `a` has (channels-last after a
        convolution), and the gradients are summed with the rule's weights in float32.
        """
        pooled = self.view.split_pool(self.layer)
        if pooled is not None and not any(size % pooled[0].kernel_size for size in a.shape[-2:]):
            return self._integrate_through_pool(a, baseline, *pooled)
        step_sizes, alphas = _riemann(self.n_steps)
        n, count = len(alphas), len(a)
        delta = a if baseline is None else a - baseline
        layout = _memory_format(a)
        points = torch.empty((n * count, *a.shape[1:]), dtype=a.dtype, device=a.device,
                             memory_format=layout)  # fmt: skip
        path = points.view(n, count, *a.shape[1:])
        with torch.no_grad():
            for i, alpha in enumerate(alphas):
                if alpha == 1.0:
                    path[i].copy_(a)  # the end point exactly, so F(a) can be read from it
                    continue
                torch.mul(delta, alpha, out=path[i])
                if baseline is not None:
                    path[i].add_(baseline)
        points.requires_grad_(True)
        values = self._forward(points)  # (n N,) float32
        (grads,) = torch.autograd.grad(values.sum(), points)
        grads = grads.view(n, count, *a.shape[1:])
        with torch.no_grad():
            total = grads.sum(0).mul_(step_sizes[0])  # riemann_right: every weight 1/n
            attributions = total.mul_(delta)
        return attributions.contiguous(), _end_outputs(values, n, count)

    def _integrate_through_pool(
        self, a: torch.Tensor, baseline: torch.Tensor | None, pool: L2Pool, rest: Callable
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`_integrate` for an upper network that starts with L2 pooling (2b -> pool2 in the
        interpretable CNN), without materializing the n path points at the layer's size.

        The point x = (1 - alpha) b + alpha a pools to exactly sqrt((1 - alpha)^2 avg(b^2) +
        2 alpha (1 - alpha) avg(a b) + alpha^2 avg(a^2) + eps) (no cancellation for ReLU
        outputs: every term >= 0), so the points start at the pooled size (a quarter of the
        layer's); and L2 pooling's gradient, x * up(g / (k^2 p)), sums over the alphas as
        b * up(sum w (1 - alpha) h) + a * up(sum w alpha h) with h = g / (k^2 p): the sums run
        at the pooled size, one upsampling after them. Equal to the plain integral up to float
        rounding (tested)."""
        step_sizes, alphas = _riemann(self.n_steps)
        n, count, k, eps = len(alphas), len(a), pool.kernel_size, pool.eps

        def avg(t: torch.Tensor) -> torch.Tensor:
            return nn.functional.avg_pool2d(t, k, k)

        with torch.no_grad():
            s_aa = avg(a * a)
            if baseline is not None:
                s_ab, s_bb = avg(a * baseline), avg(baseline * baseline)
            shape = s_aa.shape[1:]
            points = torch.empty((n * count, *shape), dtype=a.dtype, device=a.device,
                                 memory_format=_memory_format(s_aa))  # fmt: skip
            path = points.view(n, count, *shape)
            for i, alpha in enumerate(alphas):
                torch.mul(s_aa, alpha * alpha, out=path[i])  # alpha = 1: as the pooling does
                if baseline is not None and alpha != 1.0:
                    path[i].add_(s_ab, alpha=2 * alpha * (1 - alpha))
                    path[i].add_(s_bb, alpha=(1 - alpha) ** 2).clamp_min_(0.0)
                path[i].add_(eps).sqrt_()
        points.requires_grad_(True)
        assert self._fn is not None
        with autocast(self.precision, a.device):
            values = self._fn(rest(points)).float()  # (n N,)
        (grads,) = torch.autograd.grad(values.sum(), points)
        with torch.no_grad():
            per_window = grads.div_(points.detach()).mul_(1.0 / (k * k)).view(n, count, *shape)

            def weighted(coefficients: list[float]) -> torch.Tensor:
                total = per_window[0] * coefficients[0]
                for i in range(1, n):
                    total.add_(per_window[i], alpha=coefficients[i])
                return nn.functional.interpolate(total, scale_factor=k, mode="nearest")

            total = a * weighted([w * alpha for w, alpha in zip(step_sizes, alphas, strict=True)])
            if baseline is not None:
                coefficients = [
                    w * (1 - alpha) for w, alpha in zip(step_sizes, alphas, strict=True)
                ]
                total.add_(baseline * weighted(coefficients))
            attributions = total.mul_(a if baseline is None else a - baseline)
        return attributions.contiguous(), _end_outputs(values, n, count)


def _end_outputs(values: torch.Tensor, n: int, count: int) -> torch.Tensor:
    """F(a), (N,): the path's (n N,) values at its last point, alpha = 1 (`a` itself)."""
    return values.detach().view(n, count)[-1]


def _riemann(n_steps: int) -> tuple[list[float], list[float]]:
    """(weights, alphas) of captum's `METHOD` rule with `n_steps` points."""
    step_sizes, alphas = approximation_parameters(METHOD)
    return list(step_sizes(n_steps)), list(alphas(n_steps))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-d tensor stored that way (not also plain contiguous), else the
    default layout."""
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
