"""Interventions on units (Liu, *Understanding Vision-based Dynamics Models*, 2021): zero a
unit, force it to its threshold t_u, or set it to any value, through a forward hook that leaves
the model untouched once removed; the effect on every output (action distribution, value,
Q-values, decoded image); and a ranking of units by the effect of zeroing them.

Works on any ``PolicyView`` (``layer_module``, ``preprocess``, ``outputs``, ``split``, roles).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager

import numpy as np
import torch

from agents.policy_view import Outputs, PolicyView
from interpret.dissection.units import batches


@contextlib.contextmanager
def intervene(view: PolicyView, layer: str, values: Mapping[int, float]) -> Iterator[None]:
    """Within the block, unit ``u`` of ``layer`` outputs ``values[u]`` at every position (for a
    (N, D) layer: feature u). The layer's output tensor is replaced by a modified copy; the hook
    is removed on exit, so the model computes exactly what it did before."""
    settings = {int(u): float(v) for u, v in values.items()}

    def hook(_module, _inputs, output: torch.Tensor | tuple) -> torch.Tensor | tuple:
        if isinstance(output, tuple):  # an LSTM's (sequence (N, T, H), (h, c) (1, N, H))
            sequence, (h, c) = output
            sequence, h = sequence.clone(), h.clone()
            for unit, value in settings.items():
                sequence[..., unit] = value
                h[..., unit] = value
            return sequence, (h, c)
        changed = output.clone()
        for unit, value in settings.items():
            changed[:, unit] = value
        return changed

    handle = view.layer_module(layer).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def zeroed(view: PolicyView, layer: str, units: Sequence[int]) -> ContextManager[None]:
    """Node zeroing: a_u(x, p) = 0."""
    return intervene(view, layer, {int(u): 0.0 for u in units})


def output_change(view: PolicyView, before: Outputs, after: Outputs) -> dict[str, torch.Tensor]:
    """Per-observation (N,) effect of an intervention on each output, by ``view.output_roles``.

    ``logits``: KL(pi_before || pi_after) in nats and whether the most likely action changed;
    ``q``: mean |dQ| and whether the greedy action changed; ``value``: the signed change;
    any other output (a Gaussian's mean, a decoded image): mean |change| over its elements.
    Outputs missing from ``after`` (a split's upper part may not compute them) are skipped.
    """
    roles = view.output_roles()
    effects: dict[str, torch.Tensor] = {}
    for key, old in before.items():
        if key not in after:
            continue
        new, old, role = after[key].float(), old.float(), roles.get(key)
        if role == "logits":
            log_p, log_q = torch.log_softmax(old, dim=1), torch.log_softmax(new, dim=1)
            kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
            effects["policy_kl"] = kl.clamp(min=0.0)  # >= 0; rounding can give -1e-9
            effects["action_changed"] = (old.argmax(1) != new.argmax(1)).float()
        elif role == "q":
            effects["q_change"] = (new - old).abs().mean(dim=1)
            effects["action_changed"] = (old.argmax(1) != new.argmax(1)).float()
        elif role == "value":
            effects["value_change"] = new - old
            effects["value_abs_change"] = (new - old).abs()
        else:
            effects[f"{key}_abs_change"] = (new - old).abs().reshape(len(new), -1).mean(dim=1)
    return effects


@torch.no_grad()
def zeroing_effects(
    view: PolicyView,
    layer: str,
    units: Sequence[int],
    observations: np.ndarray,
    batch_size: int = 256,
    progress=None,
    use_split: bool = True,
) -> dict[str, np.ndarray]:
    """Mean effect over ``observations`` of zeroing each unit alone: {effect: (len(units),)}.

    With ``use_split``, the layer's activation is computed once (``view.split``) and only the
    part above it is rerun per unit, which gives the same numbers as the forward hook of
    ``zeroed`` (tested) many times faster for late layers. A layer whose split is not
    complete (``view.split_is_complete``: off the decision path, or a branch of an MLP) uses
    the hook.
    """
    parts = list(batches(len(observations), batch_size))
    inputs = [view.preprocess(observations[part]) for part in parts]
    baseline = [view.outputs(x) for x in inputs]
    split = use_split and view.split_is_complete(layer)
    if split:
        lower, upper = view.split(layer)
        activations = [lower(x) for x in inputs]
    sums: dict[str, np.ndarray] = {}
    for j, unit in enumerate(units):
        for b, before in enumerate(baseline):
            if split:
                changed = activations[b].clone()
                changed[:, unit] = 0.0
                after = upper(changed)
            else:
                with zeroed(view, layer, [unit]):
                    after = view.outputs(inputs[b])
            for key, effect in output_change(view, before, after).items():
                sums.setdefault(key, np.zeros(len(units)))[j] += float(effect.sum())
        if progress is not None:
            progress(j + 1)
    return {key: total / len(observations) for key, total in sums.items()}


def rank_units(effects: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray]:
    """(ranking key, unit positions ordered from the largest effect of zeroing to the least);
    the key is the policy KL, else mean |dQ|, else the first output's change; a signed effect
    ranks by its magnitude."""
    changes = [key for key in effects if key.endswith("abs_change")]
    key = next(key for key in ("policy_kl", "q_change", *changes) if key in effects)
    return key, np.argsort(-np.abs(effects[key]), kind="stable")
