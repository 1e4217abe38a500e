"""Read the NMF features an ``attribute`` report wrote, and pick features by index or label.

A report directory (``python -m interpret attribute ... --out reports/NAME``) holds
``summary.json`` (layer, target, integration steps, env, ``labels``) and ``arrays.npz``
(``directions``, (k, C) float32). On CoinRun the report labels features by the game object
that dominates their attribution (``object_labels``); elsewhere labels start empty. A user
names or renames features by editing the ``labels`` list in ``summary.json`` (e.g.
``"buzzsaw"``), then selects them by that name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.fileio import read_npz
from interpret.attribution.nmf import NMFFeatures
from interpret.core.errors import InterpretError


@dataclass
class FeaturesReport:
    """The features of one attribution report.

    Attributes:
        path: the report directory.
        features: its k NMF directions (``features.layer`` is the layer they live in).
        summary: the report's ``summary.json``, as read.
    """

    path: Path
    features: NMFFeatures
    summary: dict[str, Any]

    @property
    def target(self) -> str:
        """The attributed output (``"value"``, ``"logit:K"``, ...)."""
        return str(self.summary.get("target") or "value")

    @property
    def n_steps(self) -> int:
        """Integration steps the report used."""
        return int(self.summary.get("n_steps") or 10)

    @property
    def env_id(self) -> str | None:
        return self.summary.get("env_id")

    @property
    def env_options(self) -> dict[str, Any]:
        return dict(self.summary.get("env_options") or {})

    @property
    def layer_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of the layer's activations when the report recorded it."""
        shape = self.summary.get("layer_shape")
        return tuple(int(s) for s in shape) if shape else None

    def name(self, index: int) -> str:
        """The feature's label, or ``"feature i"`` when it has none (as the report shows it)."""
        return self.features.labels[index] or f"feature {index}"

    def index(self, key: str) -> int:
        """The feature index for `key`: an index (``"3"``) or a label, matched without regard
        to case, exactly or else as the only label containing it; a key that matches nothing
        or several raises."""
        key = key.strip()
        k = self.features.k
        if key.lstrip("-").isdigit():
            index = int(key)
            if not 0 <= index < k:
                raise InterpretError(
                    f"feature index {index} is out of range: the report has {k} features "
                    f"(0-{k - 1})"
                )
            return index
        labels = [label.strip().lower() for label in self.features.labels]
        wanted = key.lower()
        matches = [i for i, label in enumerate(labels) if label and label == wanted]
        if not matches:
            matches = [i for i, label in enumerate(labels) if label and wanted in label]
        if len(matches) == 1:
            return matches[0]
        named = [f"{i}={label!r}" for i, label in enumerate(self.features.labels) if label]
        valid = f"labels: {', '.join(named)}" if named else "the report has no labels"
        if matches:
            found = ", ".join(f"{i}={self.features.labels[i]!r}" for i in matches)
            raise InterpretError(f"feature {key!r} matches several labels ({found}); be exact")
        raise InterpretError(
            f"no feature labelled {key!r}; valid: indices 0-{k - 1}; {valid} "
            f"(name features in {self.path / 'summary.json'})"
        )


def read_features_report(path: str | Path) -> FeaturesReport:
    """Read an ``attribute`` report directory; `InterpretError` if it is not one."""
    path = Path(path)
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise InterpretError(f"{path} is not an attribution report (no summary.json)")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InterpretError(f"cannot read {summary_path}: {err}") from err
    if not isinstance(summary, dict) or "layer" not in summary:
        raise InterpretError(f"{summary_path} has no 'layer': not an attribution report")
    directions = _directions(path, summary)
    labels = summary.get("labels") or [""] * len(directions)
    if not isinstance(labels, list) or not all(isinstance(x, str | None) for x in labels):
        raise InterpretError(f"{summary_path}: labels must be a list of strings")
    if len(labels) != len(directions):
        raise InterpretError(
            f"{summary_path}: {len(labels)} labels for {len(directions)} directions"
        )
    features = NMFFeatures(
        layer=str(summary["layer"]),
        directions=directions,
        source=str(summary.get("nmf_on", "attribution")),
        reconstruction_error=float(summary.get("nmf_reconstruction_error", float("nan"))),
        labels=[str(label or "") for label in labels],
    )
    return FeaturesReport(path, features, summary)


def _directions(path: Path, summary: dict[str, Any]) -> np.ndarray:
    """(k, C) float32 from arrays.npz (full precision), else from summary.json."""
    arrays = path / "arrays.npz"
    directions: Any = None
    if arrays.is_file():
        directions = read_npz(arrays, "report's arrays file", ("directions",)).get("directions")
    if directions is None:
        directions = summary.get("directions")
    if directions is None:
        raise InterpretError(f"{path} holds no feature directions")
    try:
        directions = np.asarray(directions, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise InterpretError(f"{path}: directions are not a numeric (k, C) array") from err
    if directions.ndim != 2 or directions.shape[0] == 0:
        raise InterpretError(f"{path}: directions have shape {directions.shape}, not (k, C)")
    return directions
