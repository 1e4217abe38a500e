"""A World Models run directory as the stages read it: its config, first latents, eval env and
finished policy, and the progress CSVs they append to. A leaf: ``world_model.run`` imports the
stages, and they import this."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from agents.fileio import read_json
from agents.loading import run_algo
from world_model.frames import make_frame_env

CONFIG_FILE = "config.json"


class RunError(ValueError):
    """A run directory that cannot be created or resumed. One line."""


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's config.json as a dict; `RunError` (one line) if it is missing or damaged."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"not a World Models run directory (no {CONFIG_FILE}): {run_dir}")
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RunError(f"{path} is not readable JSON ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a JSON object but a {type(data).__name__}")
    return data


def is_world_model_run(path: str | Path) -> bool:
    return run_algo(path) == "worldmodel"


def append_progress(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a progress CSV, with a header when the file is new."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def make_eval_env(run_dir: str | Path, seed: int | None) -> Any:
    config = read_config(run_dir)
    return make_frame_env(config["env_id"], seed, **config["env_kwargs"])


def initial_latents(run_dir: str | Path) -> np.ndarray:
    """z of each episode's first frame (N, z_size): where dream episodes start."""
    return np.load(Path(run_dir) / "series" / "initial_z.npy", allow_pickle=False)


def load_policy(run_dir: str | Path) -> Any:
    """A ``Policy`` playing a finished run's best controller (for rollouts)."""
    from world_model.model import Policy, WorldModel

    config = read_config(run_dir)
    return Policy(WorldModel.load(run_dir, config, "controller_best.safetensors"))
