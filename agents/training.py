"""Training runs: build a PPO/DQN model for an env, log, checkpoint atomically, resume.

A run directory holds ``config.json`` (everything needed to resume or reproduce),
``progress.csv`` and ``tb/`` (metrics), ``checkpoints/`` and, when finished, ``model.zip``
(plus ``normalization.npz`` when rewards are normalized) and ``eval.json``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import time
from collections.abc import Callable
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
from agents import resume_state
from agents.algorithms import ALGORITHMS
from agents.fileio import atomic_path, read_json, write_json
from agents.loading import MODEL_FILE
from agents.policies import HWCActorCriticPolicy, HWCDQNPolicy
from agents.precision import has_bf16_units, set_precision
from agents.presets import resolve_schedule
from agents.runtime import keep_freed_memory
from agents.sb3_zip import read_sb3_zip, save_model

CONFIG_FILE = "config.json"

NORMALIZATION_FILE = "normalization.npz"
LATEST_FILE = "latest.json"
# Keys of a run's hyperparameters that are not keyword arguments of the algorithm.
OWN_KEYS = ("n_envs", "normalize_reward", "separate_value_trunk")


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
    precision: str = "fp32"  # "bf16": autocast in our image trunks (agents.precision)
    checkpoint_minutes: float = 5.0
    eval_episodes: int = 100
    command: str = ""

    @property
    def n_envs(self) -> int:
        return int(self.hyperparams["n_envs"])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


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
    hp = {k: resolve_schedule(v) for k, v in config.hyperparams.items() if k not in OWN_KEYS}
    policy: Any = "MlpPolicy"
    policy_kwargs: dict[str, Any] = {}  # SB3 takes {} as it takes None
    if len(venv.observation_space.shape or ()) == 3:
        policy = HWCDQNPolicy if config.algo == "dqn" else HWCActorCriticPolicy
        policy_kwargs["arch"] = config.arch
    if config.hyperparams.get("separate_value_trunk"):  # validated: PPO only
        # the value head gets its own copy of the trunk (SB3's keyword)
        policy_kwargs["share_features_extractor"] = False
    try:
        model = algo_cls(
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
    if config.precision != "fp32" and set_precision(model.policy, config.precision) == 0:
        raise RunError(f"--precision {config.precision} applies to image policies only")
    return model


class AppendingCSV(CSVOutputFormat):
    """SB3's CSV writer, continuing an existing file (on resume) instead of truncating it.

    Rows logged after ``keep_until_step`` (work lost in a crash) are dropped first; the kept
    rows are rewritten atomically, so a crash during the rewrite loses nothing.
    """

    def __init__(self, filename: Path, keep_until_step: int | None = None) -> None:
        header: list[str] = []
        if keep_until_step is not None and filename.exists():
            with open(filename, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                rows = [r for r in reader if _row_step(r) <= keep_until_step]
            with atomic_path(filename) as tmp, open(tmp, "w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
        if not header:
            super().__init__(str(filename))  # a new file
            return
        self.file = open(filename, "r+")  # noqa: SIM115 (SB3's writer keeps it; close() shuts it)
        self.file.seek(0, 2)
        self.keys = header
        self.separator = ","
        self.quotechar = '"'


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
    """Saves an atomic checkpoint between an update and the next rollout, once
    ``every_seconds`` have passed since the last one, so that a resume loses no update or row.

    It also carries a run's clock across pieces: ``time/time_elapsed`` and ``time/fps`` count
    training seconds since the run began, not since the last resume. With ``piece_seconds``
    the piece ends at the first checkpoint point after that long: a checkpoint is written and
    training stops (``stopped`` is then True) with nothing lost. ``first_save`` runs before
    the piece's first checkpoint (it records a resumed piece in config.json).
    """

    def __init__(
        self,
        run_dir: Path,
        every_seconds: float,
        record: dict[str, Any],
        elapsed_before: float = 0.0,
        piece_seconds: float | None = None,
        first_save: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.first_save = first_save
        self.run_dir = run_dir
        self.record = record
        self.every_seconds = every_seconds
        self.elapsed_before = elapsed_before
        self.piece_seconds = piece_seconds
        self.piece_start = self.last = time.monotonic()
        self.saved_at_step = -1
        self.stopped = False

    def _on_training_start(self) -> None:
        self.model.start_time = time.time_ns() - int(self.elapsed_before * 1e9)
        self.model._num_timesteps_at_start = 0
        self.saved_at_step = self.model.num_timesteps
        resume_state.restore_buffers(self.model)

    def _on_step(self) -> bool:
        return not self.stopped

    def _on_rollout_start(self) -> None:
        now = time.monotonic()
        end = self.piece_seconds is not None and now - self.piece_start >= self.piece_seconds
        due = end or now - self.last >= self.every_seconds
        if due and self.model.num_timesteps != self.saved_at_step:
            self.save()
        self.stopped = end

    def save(self) -> None:
        """Write a checkpoint now (the first one of a piece also records the piece)."""
        if self.first_save is not None:
            self.first_save()
            self.first_save = None
        save_checkpoint(self.model, self.run_dir, self.record)
        self.last = time.monotonic()
        self.saved_at_step = self.model.num_timesteps


def elapsed_seconds(model: Any) -> float:
    """Training seconds of the run so far (SB3's ``start_time`` is moved back on resume)."""
    return (time.time_ns() - model.start_time) / 1e9


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


def save_checkpoint(model: Any, run_dir: Path, record: dict[str, Any]) -> Path:
    """Write checkpoints/step_<N>.zip, its normalization and its resume state, then point
    latest.json at them (written last, so it always names a complete checkpoint)."""
    ckpt_dir = run_dir / "checkpoints"
    steps = int(model.num_timesteps)
    stem = f"step_{steps:012d}"
    zip_path = ckpt_dir / f"{stem}.zip"
    save_model(model, zip_path, record)
    save_normalization(model.get_env(), ckpt_dir / f"{stem}.{NORMALIZATION_FILE}")
    state_path = ckpt_dir / (stem + resume_state.STATE_SUFFIX)
    resume_state.save(resume_state.capture(model, elapsed_seconds(model)), state_path)
    latest = {"num_timesteps": steps, "model": zip_path.name, "state": state_path.name}
    write_json(ckpt_dir / LATEST_FILE, latest)
    for old in sorted(ckpt_dir.glob("step_*.zip"))[:-2]:  # the latest two are kept
        old.unlink()
        old.with_name(old.stem + "." + NORMALIZATION_FILE).unlink(missing_ok=True)
        old.with_name(old.stem + resume_state.STATE_SUFFIX).unlink(missing_ok=True)
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


def restore_checkpoint(model: Any, run_dir: Path) -> tuple[int, float | None]:
    """Load the latest checkpoint into a freshly built model: weights, optimizer state, step
    and update counters, normalization and (checkpoints from this version on) the resume state.

    Returns (step count, training seconds so far, or None for a checkpoint without a resume
    state: written before exact resume existed; then the envs start new episodes).
    """
    ckpt_dir = run_dir / "checkpoints"
    latest_file = ckpt_dir / LATEST_FILE
    if not latest_file.exists():  # killed before its first checkpoint: start over
        return 0, 0.0
    latest = read_json(latest_file)
    zip_path = ckpt_dir / latest["model"]
    try:
        model.set_parameters(str(zip_path), exact_match=True, device=model.device)
    except (RuntimeError, ValueError, KeyError) as err:  # weights of another network
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{zip_path} does not fit this run's config.json ({first})") from None
    archive = read_sb3_zip(zip_path)
    model.num_timesteps = int(latest["num_timesteps"])
    if isinstance(model, sb3.PPO):
        model._n_updates = int(archive.get("_n_updates", 0) or 0)
        offset = model.num_timesteps // (model.n_steps * model.n_envs)
        model.iteration_offset = offset  # type: ignore[attr-defined]  # our PPO reads it
    norm = zip_path.with_name(zip_path.stem + "." + NORMALIZATION_FILE)
    if norm.exists():
        load_normalization(model.get_env(), norm)
    if "state" not in latest:
        return model.num_timesteps, None
    elapsed = resume_state.restore(model, resume_state.load(ckpt_dir / latest["state"]))
    return model.num_timesteps, elapsed


def _elapsed_from_progress(path: Path, step: int) -> float:
    """Training seconds of the last row at or before ``step`` (checkpoints without a state)."""
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if _row_step(r) <= step]
    try:
        return float(rows[-1]["time/time_elapsed"]) if rows else 0.0
    except (KeyError, ValueError):
        return 0.0


def environment_record() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": sb3.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def machine_name() -> str:
    """'<cores> x <CPU model> (<vector ISA>[, bf16])' (model from /proc/cpuinfo on Linux; the
    ISA torch's kernels use, and whether the CPU has bf16 units), plus the CUDA device if any:
    the same model name hides CPUs whose training speeds differ several-fold."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    isa = torch.backends.cpu.get_cpu_capability()
    name = f"{os.cpu_count()} x {cpu} ({isa}{', bf16' if has_bf16_units('cpu') else ''})"
    if torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(0)}"
    return name


def changed_hyperparams(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{name: [old value, new value]} for every setting a resumed piece changed."""
    names = sorted(set(before) | set(after))
    return {k: [before.get(k), after.get(k)] for k in names if before.get(k) != after.get(k)}


def train(
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
    extra_callbacks: tuple[BaseCallback, ...] = (),
    piece_minutes: float | None = None,
) -> Any:
    """Train (or resume) a run; returns the trained SB3 model. Finished work is never lost:
    checkpoints and the final model are written atomically. ``command`` (default: the
    config's) is recorded with this piece in config.json's ``pieces``; ``extra_callbacks`` run
    after ours (tests use one to kill a run at a chosen step). With ``piece_minutes`` this
    piece stops after about that long at an exact checkpoint, without the final model; the
    returned model's ``num_timesteps`` is then below ``config.timesteps``."""
    config_path = run_dir / CONFIG_FILE  # train.py checked that it exists exactly on --resume
    keep_freed_memory()
    venv = make_training_env(config)  # env and model first: bad settings write nothing
    try:
        model = build_model(config, venv)
    except RunError:
        venv.close()
        raise
    saved = read_json(config_path) if resume else {}
    pieces = saved.get("pieces", [])
    record = model_record(model, config)
    start, elapsed = restore_checkpoint(model, run_dir) if resume else (0, 0.0)
    if elapsed is None:
        elapsed = _elapsed_from_progress(run_dir / "progress.csv", start)
    piece = {
        "command": command or config.command,
        "from_step": start,
        "precision": config.precision,
        "device": config.device,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_name(),
    }
    changed = changed_hyperparams(saved.get("hyperparams", config.hyperparams), config.hyperparams)
    if changed:
        piece["changed"] = changed
    pieces.append(piece)

    def record_piece() -> None:
        """config.json with this piece listed: at once for a new run, at a resumed piece's
        first checkpoint (an interrupted resume that saved nothing leaves the file alone)."""
        data = {**asdict(config), "environment": environment_record(), "pieces": pieces}
        write_json(config_path, data)

    if not resume:
        record_piece()
    logger = Logger(
        str(run_dir),
        [
            AppendingCSV(run_dir / "progress.csv", keep_until_step=start if resume else None),
            TensorBoardOutputFormat(str(run_dir / "tb")),
        ],
    )
    model.set_logger(logger)
    every = config.checkpoint_minutes * 60
    checkpointer = Checkpointer(
        run_dir,
        every,
        record,
        elapsed_before=elapsed,
        piece_seconds=None if piece_minutes is None else piece_minutes * 60,
        first_save=record_piece if resume else None,
    )
    callbacks: list[BaseCallback] = [checkpointer]
    if envs.parse_env_id(config.env_id)[0] == "procgen":
        callbacks.append(LevelCompletionLogger())
    callbacks.extend(extra_callbacks)
    try:
        model.learn(
            total_timesteps=max(config.timesteps - start, 0),
            callback=CallbackList(callbacks),
            reset_num_timesteps=not resume,
            progress_bar=progress,
        )
        if checkpointer.stopped:  # the piece ended at its checkpoint
            model.num_timesteps = checkpointer.saved_at_step
            return model
        checkpointer.save()
        save_model(model, run_dir / MODEL_FILE, record)
        save_normalization(venv, run_dir / NORMALIZATION_FILE)
    finally:
        logger.close()
        venv.close()
    return model
