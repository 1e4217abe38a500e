"""How much a policy's outputs change when the game draws a frame without one class of object.

For each recorded CoinRun state the renderer draws the frame as it is and once per object class
with that class taken out of the state (``object_masks.CLASS_EDITS``: buzzsaws, enemies, the
coin, ...), so the two frames differ exactly on that class's pixels and nothing else. Over the
frames where a class is drawn, the policy's reaction to its removal is measured as:

- ``kl``: KL(pi(. | frame) || pi(. | frame without the class)), nats per frame;
- ``greedy_changed``: the share of frames whose greedy action changes;
- ``value_change``: V(frame without) - V(frame), in the model's value units (signed mean, and
  the mean of its absolute value), where the policy has a value.

A policy that ignores a class scores 0 on it exactly; a critic and an actor with separate trunks
can differ (the critic sees buzzsaws, the actor need not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from agents.policy_view import PolicyView
from interpret.attribution.object_masks import CLASS_EDITS, iter_rendered_frames, state_edit
from interpret.core.errors import InterpretError

OCCLUDABLE = tuple(CLASS_EDITS)  # agent, buzzsaw, enemy, coin, lava, crate, wall, velocity panel
Z95 = 1.959963984540054


@dataclass
class OcclusionExample:
    """A frame where removing the class moved the policy most: both frames (64, 64, 3) uint8."""

    kl: float
    greedy: int  # the greedy action on the frame as drawn
    greedy_without: int  # ... and without the class
    frame: np.ndarray
    frame_without: np.ndarray


@dataclass
class ClassOcclusion:
    """One object class's row (means over the ``frames`` frames where it is drawn; NaN if 0)
    and its ``examples``: the frames of largest KL, largest first."""

    name: str
    frames: int
    kl: float
    kl_ci: tuple[float, float]  # normal-approximation 95% interval of the mean
    greedy_changed: float
    value_change: float
    value_abs_change: float
    examples: list[OcclusionExample] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready values; the examples without their frames."""
        row = asdict(self)
        row["examples"] = [
            {"kl": e.kl, "greedy": e.greedy, "greedy_without": e.greedy_without}
            for e in self.examples
        ]
        return row


def occlusion_sensitivity(
    view: PolicyView,
    states: Sequence[bytes],
    classes: Sequence[str] = OCCLUDABLE,
    batch_size: int = 64,
    examples: int = 0,
) -> list[ClassOcclusion]:
    """One ``ClassOcclusion`` per class, measured on CoinRun ``states`` (state bytes as
    ``record_trajectories(record_states=True)`` keeps them), each with its ``examples`` frames
    of largest KL."""
    unknown = [c for c in classes if c not in CLASS_EDITS]
    if unknown or not classes:
        raise InterpretError(f"object classes must be among {', '.join(OCCLUDABLE)}; got {classes}")
    edits = [state_edit(CLASS_EDITS[c]) for c in classes]
    rows: dict[str, list[np.ndarray]] = {c: [] for c in classes}
    kept: dict[str, list[OcclusionExample]] = {c: [] for c in classes}
    for frames in iter_rendered_frames(states, edits, batch_size):  # one env for all batches
        real = _outputs(view, frames[:, 0])
        for i, name in enumerate(classes):
            drawn = np.flatnonzero((frames[:, 1 + i] != frames[:, 0]).any(axis=(1, 2, 3)))
            if len(drawn) == 0:
                continue
            removed = _outputs(view, frames[drawn, 1 + i])
            changes = _changes({k: v[drawn] for k, v in real.items()}, removed)
            rows[name].append(changes)
            for j in np.argsort(-changes[:, 0], kind="stable")[:examples]:
                kept[name].append(OcclusionExample(
                    kl=float(changes[j, 0]), greedy=int(real["greedy"][drawn[j]]),
                    greedy_without=int(removed["greedy"][j]), frame=frames[drawn[j], 0],
                    frame_without=frames[drawn[j], 1 + i],
                ))  # fmt: skip
            kept[name] = sorted(kept[name], key=lambda e: -e.kl)[:examples]
    return [_summarize(name, rows[name], kept[name]) for name in classes]


def _outputs(view: PolicyView, frames: np.ndarray) -> dict[str, torch.Tensor]:
    """log pi (N, A), greedy action (N,) and value (N,) (NaN without a critic)."""
    with torch.no_grad():
        out = view.outputs(view.preprocess(frames))
        log_probs = view.action_log_probs(out)
        if log_probs is None:
            raise InterpretError("occlusion measures a stochastic discrete policy (log pi)")
        value = view.state_value(out)
    nan = torch.full((len(frames),), float("nan"))
    return {
        "log_probs": log_probs.float(),
        "greedy": view.action_scores(out).argmax(dim=1),
        "value": nan if value is None else value.float().reshape(-1),
    }


def _changes(real: dict[str, torch.Tensor], removed: dict[str, torch.Tensor]) -> np.ndarray:
    """(n, 3): per frame KL(real || removed), greedy action changed (0/1), value change."""
    p = real["log_probs"]
    kl = (p.exp() * (p - removed["log_probs"])).sum(dim=1).clamp(min=0.0)
    changed = (real["greedy"] != removed["greedy"]).float()
    value = removed["value"] - real["value"]
    return torch.stack([kl, changed, value], dim=1).numpy().astype(np.float64)


def _summarize(
    name: str, parts: list[np.ndarray], examples: list[OcclusionExample]
) -> ClassOcclusion:
    per_frame = np.concatenate(parts) if parts else np.zeros((0, 3))
    n = len(per_frame)
    if n == 0:
        nan = float("nan")
        return ClassOcclusion(name, 0, nan, (nan, nan), nan, nan, nan)
    kl = per_frame[:, 0]
    half = Z95 * float(kl.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    mean_kl = float(kl.mean())
    return ClassOcclusion(
        name=name,
        frames=n,
        kl=mean_kl,
        kl_ci=(max(mean_kl - half, 0.0), mean_kl + half),
        greedy_changed=float(per_frame[:, 1].mean()),
        value_change=float(per_frame[:, 2].mean()),
        value_abs_change=float(np.abs(per_frame[:, 2]).mean()),
        examples=examples,
    )


def format_table(rows: Sequence[ClassOcclusion], frames: int) -> str:
    """The printed table: a row per class, on the frames where it is drawn."""
    lines = [
        f"{'object removed':<16}{'frames':>7}  {'KL(pi || pi without), nats (95% CI)':<36}"
        f"{'greedy changed':>15}  {'value change (mean, mean |.|)':<30}"
    ]
    for r in rows:
        if r.frames == 0:
            lines.append(f"{r.name:<16}{0:>7}  (never drawn)")
            continue
        kl = f"{r.kl:.4f} ({r.kl_ci[0]:.4f}-{r.kl_ci[1]:.4f})"
        value = (
            "-" if np.isnan(r.value_change) else f"{r.value_change:+.4f}, {r.value_abs_change:.4f}"
        )
        lines.append(f"{r.name:<16}{r.frames:>7}  {kl:<36}{r.greedy_changed:>14.1%}  {value:<30}")
    lines.append(f"({frames} frames of the agent's own play; each row counts the frames where the "
                 "game draws that class)")  # fmt: skip
    return "\n".join(lines)
