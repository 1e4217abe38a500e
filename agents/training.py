"""Training runs: build a PPO/DQN model for an env, log, checkpoint atomically, resume.

A run directory holds ``config.json`` (everything needed to resume or reproduce),
``progress.csv`` and ``tb/`` (metrics), ``checkpoints/`` and, when finished, ``model.zip``
(plus ``normalization.npz`` when rewards are normalized) and ``eval.json``.
"""

from __future__ import annotations

import csv
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import stable_baselines3 as sb3
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import envs
from agents.algorithms import ALGORITHMS
from agents.fileio import atomic_path, read_json, write_json
from agents.loading import MODEL_FILE
from agents.policies import HWCActorCriticPolicy, HWCDQNPolicy
from agents.presets import PRESETS, resolve_schedule
from agents.runtime import keep_freed_memory
from agents.sb3_zip import add_extra, read_sb3_zip

CONFIG_FILE = "config.json"

NORMALIZATION_FILE = "normalization.npz"
LATEST_FILE = "latest.json"


class RunError(ValueError):
    """A run that cannot start: existing directory, missing checkpoint, bad settings."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json)."""

    algo: str
    env_id: str
    arch: str
    timesteps: int
    seed: int = 0
    preset: str = "default-ppo"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)  # incl. n_envs, normalize_reward
    device: str = "auto"
    checkpoint_minutes: float = 5.0
    eval_episodes: int = 100
    command: str = ""

    @property
    def n_envs(self) -> int:
        return int(self.hyperparams["n_envs"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def merged_hyperparams(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings with command-line overrides applied."""
    return {**PRESETS[preset], **overrides}


def make_training_env(config: TrainConfig) -> VecEnv:
    """The vectorized env, with reward normalization when the settings ask for it."""
    venv = envs.make_vec_env(config.env_id, config.n_envs, config.seed, **config.env_kwargs)
    if config.hyperparams.get("normalize_reward"):
        gamma = float(config.hyperparams.get("gamma", 0.99))
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=gamma)
    return venv


def build_model(config: TrainConfig, venv: VecEnv) -> sb3.PPO | sb3.DQN:
    """An untrained PPO/DQN for ``venv``; images go to our HWC policies, others to SB3's MLP."""
    algo_cls = ALGORITHMS[config.algo]
    hp = {k: resolve_schedule(v) for k, v in config.hyperparams.items()}
    hp.pop("n_envs", None)
    hp.pop("normalize_reward", None)
    image = len(venv.observation_space.shape) == 3
    if image:
        policy: Any = HWCDQNPolicy if config.algo == "dqn" else HWCActorCriticPolicy
        policy_kwargs = {"arch": config.arch}
    else:
        policy, policy_kwargs = "MlpPolicy", None
    try:
        return algo_cls(
            policy,
            venv,
            policy_kwargs=policy_kwargs,
            seed=config.seed,
            device=config.device,
            verbose=0,
            **hp,
        )
    except TypeError as err:
        raise RunError(f"bad setting for {config.algo}: {err}") from err


class AppendingCSV(CSVOutputFormat):
    """SB3's CSV writer, continuing an existing file (on resume) instead of truncating it.

    Rows logged after ``keep_until_step`` (work lost in a crash) are dropped first.
    """

    def __init__(self, filename: Path, keep_until_step: int | None = None) -> None:
        rows: list[dict[str, str]] = []
        header: list[str] = []
        if keep_until_step is not None and filename.exists():
            with open(filename, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if _row_step(r) <= keep_until_step]
        super().__init__(str(filename))  # opens "w+": rewrite what is kept
        if header:
            self.keys = header
            writer = csv.DictWriter(self.file, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
            self.file.flush()


def _row_step(row: dict[str, str]) -> float:
    value = row.get("time/total_timesteps") or "0"
    try:
        return float(value)
    except ValueError:
        return 0.0


class LevelCompletionLogger(BaseCallback):
    """Logs Procgen's level-completion rate over the episodes finished in each rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.completed: list[bool] = []

    def _on_step(self) -> bool:
        for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
            if done and "level_complete" in info:
                self.completed.append(bool(info["level_complete"]))
        return True

    def _on_rollout_end(self) -> None:
        if self.completed:
            self.logger.record("rollout/level_complete_rate", float(np.mean(self.completed)))
            self.completed = []


class Checkpointer(BaseCallback):
    """Saves an atomic checkpoint at the end of a rollout once ``every_seconds`` have passed."""

    def __init__(
        self, run_dir: Path, every_seconds: float, record: dict[str, Any], keep: int = 2
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.record = record
        self.every_seconds = every_seconds
        self.keep = keep
        self.last = time.monotonic()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if time.monotonic() - self.last >= self.every_seconds:
            save_checkpoint(self.model, self.run_dir, self.record, self.keep)
            self.last = time.monotonic()


def _checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def save_normalization(venv: VecEnv, path: Path) -> None:
    """VecNormalize's running statistics as plain arrays (no pickle)."""
    if not isinstance(venv, VecNormalize):
        return
    with atomic_path(path, ".npz") as tmp:
        np.savez(
            tmp,
            ret_mean=venv.ret_rms.mean,
            ret_var=venv.ret_rms.var,
            ret_count=venv.ret_rms.count,
            returns=venv.returns,
        )


def load_normalization(venv: VecEnv, path: Path) -> None:
    if not isinstance(venv, VecNormalize):
        return
    with np.load(path) as data:
        venv.ret_rms.mean = data["ret_mean"]
        venv.ret_rms.var = data["ret_var"]
        venv.ret_rms.count = float(data["ret_count"])
        if data["returns"].shape == venv.returns.shape:
            venv.returns = data["returns"]


def save_model(model: Any, path: Path, extra: dict[str, Any]) -> None:
    """SB3 zip (loads in plain SB3) with our JSON record, written atomically."""
    with atomic_path(path, ".zip") as tmp:
        model.save(tmp)
        add_extra(tmp, extra)


def save_checkpoint(model: Any, run_dir: Path, record: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoints/step_<N>.zip (+ normalization) and point latest.json at it."""
    ckpt_dir = _checkpoint_dir(run_dir)
    steps = int(model.num_timesteps)
    zip_path = ckpt_dir / f"step_{steps:012d}.zip"
    save_model(model, zip_path, record)
    norm_path = ckpt_dir / f"step_{steps:012d}.{NORMALIZATION_FILE}"
    save_normalization(model.get_env(), norm_path)
    write_json(ckpt_dir / LATEST_FILE, {"num_timesteps": steps, "model": zip_path.name})
    for old in sorted(ckpt_dir.glob("step_*.zip"))[:-keep]:
        old.unlink()
        old.with_name(old.stem + "." + NORMALIZATION_FILE).unlink(missing_ok=True)
    return zip_path


def model_record(model: Any, config: TrainConfig) -> dict[str, Any]:
    """The JSON record stored in each saved zip (rlinterp.json)."""
    return {
        "algo": config.algo,
        "policy_class": type(model.policy).__name__,
        "env_id": config.env_id,
        "env_kwargs": config.env_kwargs,
        "arch": config.arch,
    }


def restore_checkpoint(model: Any, run_dir: Path) -> int:
    """Load weights, optimizer state, step count and normalization from the latest checkpoint."""
    ckpt_dir = _checkpoint_dir(run_dir)
    latest_file = ckpt_dir / LATEST_FILE
    if not latest_file.exists():  # killed before its first checkpoint: start over
        return 0
    latest = read_json(latest_file)
    zip_path = ckpt_dir / latest["model"]
    model.set_parameters(str(zip_path), exact_match=True, device=model.device)
    archive = read_sb3_zip(zip_path)
    model.num_timesteps = int(latest["num_timesteps"])
    if isinstance(model, sb3.PPO):
        model._n_updates = int(archive.get("_n_updates", 0) or 0)
    norm = zip_path.with_name(zip_path.stem + "." + NORMALIZATION_FILE)
    if norm.exists():
        load_normalization(model.get_env(), norm)
    return model.num_timesteps


def environment_record() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": sb3.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def train(config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = True) -> Any:
    """Train (or resume) a run; returns the trained SB3 model. Finished work is never lost:
    checkpoints and the final model are written atomically."""
    config_path = run_dir / CONFIG_FILE
    if resume and not config_path.exists():
        raise RunError(f"nothing to resume: {config_path} does not exist")
    if not resume and config_path.exists():
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or pick --out")
    keep_freed_memory()
    venv = make_training_env(config)  # env and model first: bad settings write nothing
    try:
        model = build_model(config, venv)
    except RunError:
        venv.close()
        raise
    if not resume:
        write_json(config_path, {**asdict(config), "environment": environment_record()})
    record = model_record(model, config)
    start = restore_checkpoint(model, run_dir) if resume else 0
    logger = Logger(
        str(run_dir),
        [
            AppendingCSV(run_dir / "progress.csv", keep_until_step=start if resume else None),
            TensorBoardOutputFormat(str(run_dir / "tb")),
        ],
    )
    model.set_logger(logger)
    callbacks = [Checkpointer(run_dir, config.checkpoint_minutes * 60, record)]
    if envs.parse_env_id(config.env_id)[0] == "procgen":
        callbacks.append(LevelCompletionLogger())
    try:
        model.learn(
            total_timesteps=max(config.timesteps - start, 0),
            callback=CallbackList(callbacks),
            reset_num_timesteps=not resume,
            progress_bar=progress,
        )
        save_checkpoint(model, run_dir, record)
        save_model(model, run_dir / MODEL_FILE, record)
        save_normalization(venv, run_dir / NORMALIZATION_FILE)
    finally:
        logger.close()
        venv.close()
    return model
