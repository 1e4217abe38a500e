"""Integrated gradients of a scalar output with respect to a hidden layer's activations.

Hilton et al. (2020), Appendix B: with ``V(x) = F(A(x))`` where ``A`` computes the layer's
activations, the attribution of an observation ``x`` is

    integral_{alpha=0}^{1} grad_a F(alpha * A(x)) d alpha  (pointwise *)  A(x),

a straight-line path from a zero baseline, approximated at alpha = 0.1, 0.2, ..., 1. It has the
layer's shape and sums to ``F(A(x)) - F(0)`` up to the integration error (completeness).

captum's ``IntegratedGradients`` does the integration (``method="riemann_right"`` with
``n_steps=10`` evaluates exactly those alphas); its forward function is only the part of the
network *above* the layer (``Inspectable.split``), so the lower layers run once per
observation instead of once per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients

from agents.inspectable import Inspectable, Outputs
from interpret.errors import InterpretError

Target = str | Callable[[Outputs], torch.Tensor]
METHOD = "riemann_right"  # alphas 1/n, 2/n, ..., 1: the paper's 0.1, ..., 1 for n = 10


def target_function(target: Target, outputs_example: Outputs | None = None) -> Callable:
    """A scalar output (N,) of the network's outputs dict, from a name or a callable.

    Names: ``"value"``; ``"logit:K"`` (policy logit K); ``"q:K"`` (Q-value of action K);
    ``"max-q"``. A callable takes the outputs dict and returns a (N,) tensor.
    """
    if callable(target):
        return target
    name, _, index = str(target).partition(":")
    keys = set(outputs_example) if outputs_example is not None else None

    def need(key: str) -> None:
        if keys is not None and key not in keys:
            raise InterpretError(
                f"target {target!r} needs a {key!r} output; this policy has {sorted(keys)}"
            )

    if name == "value" and not index:
        need("value")
        return lambda out: out["value"]
    if name == "max-q" and not index:
        need("q")
        return lambda out: out["q"].max(dim=1).values
    if name in ("logit", "q") and index.isdigit():
        key = "logits" if name == "logit" else "q"
        need(key)
        k = int(index)
        if outputs_example is not None and k >= outputs_example[key].shape[1]:
            raise InterpretError(
                f"target {target!r}: index out of range (the policy has "
                f"{outputs_example[key].shape[1]} actions)"
            )
        return lambda out: out[key][:, k]
    raise InterpretError(f"unknown target {target!r}; use value, logit:K, q:K or max-q")


def default_target(view: Inspectable) -> str:
    """``"value"`` for actor-critics, ``"max-q"`` for Q-networks."""
    return "max-q" if view.algo == "dqn" else "value"


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


class HiddenLayerIntegratedGradients:
    """``HiddenLayerIntegratedGradients(view, "2b").attribute(obs)`` -> ``LayerAttribution``.

    :param view: any policy ``agents.load`` returns
    :param layer: one of ``view.layers()``
    :param target: what to attribute (see ``target_function``); default value, or max-Q
    :param n_steps: integration points (alpha = 1/n, ..., 1)
    """

    def __init__(
        self, view: Inspectable, layer: str, target: Target | None = None, n_steps: int = 10
    ) -> None:
        if n_steps < 1:
            raise InterpretError(f"n_steps must be positive, got {n_steps}")
        self.view = view
        self.layer = layer
        self.lower, self.upper = view.split(layer)  # raises UnknownLayerError
        self.target = default_target(view) if target is None else target
        self.target_name = self.target if isinstance(self.target, str) else _name(self.target)
        self.n_steps = n_steps
        self._fn: Callable | None = None

    @property
    def alphas(self) -> list[float]:
        return [(i + 1) / self.n_steps for i in range(self.n_steps)]

    def _forward(self, activations: torch.Tensor) -> torch.Tensor:
        assert self._fn is not None
        return self._fn(self.upper(activations))

    def attribute(
        self,
        observations: np.ndarray,
        *,
        batch_size: int = 64,
        baseline: torch.Tensor | None = None,
    ) -> LayerAttribution:
        """Attributions for raw observations (N, *obs_shape) as the env gives them.

        :param batch_size: observations per captum call (each runs ``n_steps`` times as many
            upper-network evaluations in one batch)
        :param baseline: the path's starting point in activation space, (1, *layer_shape) or
            (N, *layer_shape); zero (the paper's choice) when None
        """
        observations = np.asarray(observations)
        if len(observations) == 0:
            raise InterpretError("no observations to attribute")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("attr", "act", "out", "base", "err")}
        for start in range(0, len(observations), batch_size):
            chunk = observations[start : start + batch_size]
            base = None
            if baseline is not None:
                base = baseline if baseline.shape[0] == 1 else baseline[start : start + len(chunk)]
            for key, value in zip(parts, self._attribute_batch(chunk, base), strict=True):
                parts[key].append(value)
        joined = {k: np.concatenate(v) for k, v in parts.items()}
        return LayerAttribution(
            layer=self.layer,
            target=self.target_name,
            attributions=joined["attr"],
            activations=joined["act"],
            outputs=joined["out"],
            baseline_outputs=joined["base"],
            completeness_error=joined["err"],
            alphas=self.alphas,
        )

    def _attribute_batch(
        self, observations: np.ndarray, baseline: torch.Tensor | None
    ) -> tuple[np.ndarray, ...]:
        view = self.view
        with torch.no_grad():
            activations = self.lower(view.preprocess(observations)).float()
            if self._fn is None:
                self._fn = target_function(self.target, self.upper(activations[:1]))
        if baseline is None:
            baseline = torch.zeros_like(activations[:1])
        baseline = baseline.to(activations)
        ig = IntegratedGradients(self._forward)
        attributions = ig.attribute(
            activations,
            baselines=baseline.expand_as(activations),
            n_steps=self.n_steps,
            method=METHOD,
        )
        with torch.no_grad():
            outputs = self._forward(activations)
            base_outputs = self._forward(baseline).expand_as(outputs)  # once if shared
        # Completeness (captum's convergence delta, without its two extra forward passes).
        delta = attributions.flatten(1).sum(1) - (outputs - base_outputs)
        return (
            attributions.detach().float().cpu().numpy(),
            activations.cpu().numpy(),
            outputs.float().cpu().numpy(),
            base_outputs.float().cpu().numpy(),
            delta.detach().float().cpu().numpy(),
        )


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
