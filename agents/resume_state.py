"""What a checkpoint holds beyond weights and optimizer: everything the next step depends on.

A checkpoint is taken between an update and the next rollout. Then, besides the SB3 zip
(weights and optimizer after the update, step and update counters) and the reward
normalization, the next step depends on:

- the random generators: Python's, NumPy's (minibatch order), torch's (action sampling),
  CUDA's when present, and the action space's (DQN exploration);
- the last observations and episode-start flags of every env;
- the envs' own state: Procgen's game-state bytes (``ProcgenVecEnv.save_state``); other
  envs (Atari, Box2D) cannot be saved, so a resumed run starts new episodes there;
- what goes into the next ``progress.csv`` row: the logger's values recorded since the last
  row (the update's losses), the episode infos behind ``rollout/ep_rew_mean``, and the
  training seconds so far (``time/time_elapsed`` counts across pieces).

``capture(model, elapsed)`` returns plain arrays plus one JSON string, saved as ``.npz`` and
loaded without pickle; ``restore(model, arrays)`` puts them back before ``learn`` continues.
"""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.fileio import atomic_path
from envs.procgen_vec import ProcgenVecEnv

STATE_SUFFIX = ".state.npz"
_ENV_PREFIX = "env_"


def capture(model: Any, elapsed_seconds: float) -> dict[str, np.ndarray]:
    """The model's resumable state (see the module docstring) as plain arrays."""
    numpy_state = np.random.get_state(legacy=True)
    if not isinstance(numpy_state, tuple):
        raise TypeError("NumPy's global RandomState does not use MT19937; cannot capture it")
    record: dict[str, Any] = {
        "python_random": _jsonable(random.getstate()),
        "numpy_random": {"pos": int(numpy_state[2]), "gauss": [numpy_state[3], numpy_state[4]]},
        "action_space_random": _jsonable(model.action_space.np_random.bit_generator.state),
        "elapsed_seconds": float(elapsed_seconds),
        "episode_infos": [_jsonable(info) for info in model.ep_info_buffer or []],
        "episode_successes": [bool(s) for s in model.ep_success_buffer or []],
        "episode_num": int(getattr(model, "_episode_num", 0)),
        "pending_log": _pending_log(model.logger),
    }
    arrays: dict[str, np.ndarray] = {
        "record": np.asarray(json.dumps(record)),
        "numpy_keys": np.asarray(numpy_state[1], np.uint32),
        "torch_rng": torch.get_rng_state().numpy(),
        "last_obs": np.asarray(model._last_obs),
        "last_episode_starts": np.asarray(model._last_episode_starts, bool),
    }
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"cuda_rng_{i}"] = cuda_state.numpy()
    env = model.get_env().unwrapped  # under SB3's wrappers (VecNormalize, ...)
    if isinstance(env, ProcgenVecEnv):
        arrays.update({_ENV_PREFIX + k: v for k, v in env.save_state().items()})
    return arrays


def restore(model: Any, arrays: dict[str, np.ndarray]) -> float:
    """Put ``capture``'s state back into a freshly built model; returns the elapsed seconds.

    Call after the weights are loaded and before ``learn``: with ``_last_obs`` set, SB3 does
    not reset the envs. The episode and logger buffers are restored by ``restore_buffers``
    once ``learn`` has created them.
    """
    record = json.loads(str(arrays["record"]))
    state = record["python_random"]
    random.setstate((state[0], tuple(state[1]), state[2]))
    gauss = record["numpy_random"]["gauss"]
    np.random.set_state(
        ("MT19937", arrays["numpy_keys"], record["numpy_random"]["pos"], gauss[0], gauss[1])
    )
    torch.set_rng_state(torch.from_numpy(np.array(arrays["torch_rng"], np.uint8)))
    cuda = sorted(k for k in arrays if k.startswith("cuda_rng_"))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.from_numpy(np.array(arrays[k])) for k in cuda])
    model.action_space.np_random.bit_generator.state = record["action_space_random"]
    env = model.get_env().unwrapped
    env_state = {k[len(_ENV_PREFIX) :]: arrays[k] for k in arrays if k.startswith(_ENV_PREFIX)}
    if env_state and isinstance(env, ProcgenVecEnv):  # else learn() resets the envs
        env.load_state(env_state)
        model._last_obs = np.array(arrays["last_obs"])
        model._last_episode_starts = np.array(arrays["last_episode_starts"], bool)
    model._episode_num = int(record.get("episode_num", 0))
    model._resume_record = record  # read by restore_buffers once learn() made the buffers
    return float(record["elapsed_seconds"])


def restore_buffers(model: Any) -> None:
    """Refill the episode-info buffers and the logger's pending values (after ``_setup_learn``)."""
    record = getattr(model, "_resume_record", None)
    if record is None:
        return
    if model.ep_info_buffer is not None:
        model.ep_info_buffer.extend(record["episode_infos"])
    if model.ep_success_buffer is not None:
        model.ep_success_buffer.extend(record["episode_successes"])
    for key, (value, exclude) in record["pending_log"].items():
        model.logger.record(key, value, exclude=tuple(exclude) if exclude else None)
    model._resume_record = None


def save(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Write the arrays as an uncompressed .npz, atomically."""
    with atomic_path(path, ".npz") as tmp:
        np.savez(tmp, **arrays)


def load(path: Path) -> dict[str, np.ndarray]:
    """Read a state file without pickle; ValueError if it is not one."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key in ("record", "numpy_keys", "torch_rng", "last_obs", "last_episode_starts"):
        if key not in arrays:
            raise ValueError(f"{path.name} is not a resume state (no {key!r})")
    return arrays


def _pending_log(logger: Any) -> dict[str, list[Any]]:
    """The logger's values recorded since its last dump: {key: [value, excluded formats]}."""
    pending = {}
    for key, value in logger.name_to_value.items():
        if isinstance(value, (int, float, np.integer, np.floating, bool, str)):
            excluded = logger.name_to_excluded.get(key)
            pending[key] = [_jsonable(value), list(excluded) if excluded else None]
    return pending


def _jsonable(value: Any) -> Any:
    """Tuples, deques and NumPy scalars/arrays -> JSON types."""
    if isinstance(value, (tuple, list, deque)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
