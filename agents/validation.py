"""Checks of a training run's settings and files, before any work: one line for each problem.

    check_hyperparams("ppo", {"n_steps": -3})   # SettingsError: n_steps (--n-steps) must be ...
    check_config(config)                        # a TrainConfig: steps, seed, minutes, hp
    config = config_from_json(run_dir / "config.json")     # --resume: types and values
    check_resumable(run_dir)                    # latest.json, its checkpoint, normalization

Stable-Baselines3 checks some settings with ``assert`` (a traceback), some never (a negative
buffer size fails deep inside numpy); these rules say, for every setting a preset or flag can
set, what it must be. A checkpoint is read as `agents.loading` reads models: nothing unpickled.
"""

from __future__ import annotations

import csv
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeGuard

from agents import resume_state
from agents.fileio import InputFileError, read_json_file, read_npz
from agents.precision import PRECISIONS


class SettingsError(ValueError):
    """A training setting or run file that cannot work. One line."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _schedule(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    """A number, or ``"lin_<x>"`` (linear decay from x), whose value passes ``check``."""

    def ok(value: Any) -> bool:
        if isinstance(value, str) and value.startswith("lin_"):
            try:
                value = float(value[4:])
            except ValueError:
                return False
        return _number(value) and check(value)

    return ok


# setting -> (test, what it must be)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_envs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "n_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "n_epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "learning_rate": (_schedule(lambda x: x > 0), "a number > 0 or lin_<x>"),
    "gamma": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "gae_lambda": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "clip_range": (_schedule(lambda x: x > 0), "a number > 0 or lin_<x>"),
    "clip_range_vf": (
        lambda v: v is None or _schedule(lambda x: x > 0)(v),
        "a number > 0, lin_<x> or None",
    ),
    "ent_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "vf_coef": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "max_grad_norm": (lambda v: _number(v) and v > 0, "a number > 0"),
    "target_kl": (lambda v: v is None or (_number(v) and v > 0), "a number > 0 or None"),
    "normalize_reward": (lambda v: isinstance(v, bool), "true or false"),
    "normalize_advantage": (lambda v: isinstance(v, bool), "true or false"),
    "separate_value_trunk": (lambda v: isinstance(v, bool), "true or false"),
    "micro_batch_size": (
        lambda v: v is None or (_integer(v) and v >= 1),
        "an integer >= 1 or None",
    ),
    "optimize_memory_usage": (lambda v: isinstance(v, bool), "true or false"),
    "buffer_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "learning_starts": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "target_update_interval": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "train_freq": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "gradient_steps": (lambda v: _integer(v) and (v >= 1 or v == -1), "an integer >= 1 or -1"),
    "exploration_fraction": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "exploration_initial_eps": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "exploration_final_eps": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "tau": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
}


def check_hyperparams(algo: str, hp: dict[str, Any], where: str = "") -> None:
    """`SettingsError` for an unknown keyword of ``algo`` or a value its rule refuses."""
    from agents.algorithms import ALGORITHMS
    from agents.training import OWN_KEYS

    accepted = _keywords(ALGORITHMS[algo]) - {"self", "policy", "env", "policy_kwargs", "seed"}
    accepted -= {"device", "verbose", "_init_setup_model"}
    for key, value in hp.items():
        if key not in accepted and key not in OWN_KEYS:
            valid = ", ".join(sorted(accepted))
            raise SettingsError(f"{where}{key!r} is not a {algo.upper()} setting; valid: {valid}")
        rule = RULES.get(key)
        if rule is not None and not rule[0](value):
            flag = "--" + key.replace("_", "-")
            raise SettingsError(f"{where}{key} ({flag}) must be {rule[1]}, got {value!r}")
    if hp.get("separate_value_trunk") and algo != "ppo":
        raise SettingsError(f"{where}separate_value_trunk applies to PPO only")
    least, note = (2, " for PPO") if algo == "ppo" else (1, "")  # SB3's PPO asserts > 1
    batch = hp.get("batch_size", least)
    if not (_integer(batch) and batch >= least):
        raise SettingsError(
            f"{where}batch_size (--batch-size) must be an integer >= {least}{note}, got {batch!r}"
        )
    if algo == "ppo":
        micro, batch = hp.get("micro_batch_size"), hp.get("batch_size", 64)
        if micro is not None and micro > batch:
            raise SettingsError(
                f"{where}micro_batch_size (--micro-batch-size) must be at most batch_size "
                f"({batch}), got {micro}"
            )
        rollout = hp.get("n_steps", 2048) * hp.get("n_envs", 1)
        if rollout < 2:
            raise SettingsError(f"{where}n_steps x n_envs must be > 1 for PPO, got {rollout}")


def _keywords(cls: type) -> set[str]:
    """Keyword arguments of ``cls(...)``: its ``__init__``'s, and its bases' while they pass
    ``**kwargs`` on."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def check_config(config: Any, where: str = "") -> None:
    """The checks of a `agents.training.TrainConfig` that SB3 or the env would make late (its
    field types: `check_field_types`, or the argument parser's)."""
    import envs
    from agents.architectures import ARCHS

    if config.algo not in ("ppo", "dqn"):
        raise SettingsError(f"{where}algo must be ppo or dqn, got {config.algo!r}")
    envs.parse_env_id(config.env_id)
    if config.arch not in ARCHS:
        raise SettingsError(f"{where}arch must be one of {', '.join(ARCHS)}, got {config.arch!r}")
    if not (_integer(config.timesteps) and config.timesteps > 0):
        raise SettingsError(f"{where}timesteps must be a positive integer, got {config.timesteps}")
    if not (_integer(config.seed) and 0 <= config.seed < 2**31):
        raise SettingsError(f"{where}seed must be an integer in [0, 2^31), got {config.seed}")
    if not (_number(config.checkpoint_minutes) and config.checkpoint_minutes >= 0):
        raise SettingsError(
            f"{where}checkpoint minutes (--checkpoint-minutes) must be a number >= 0, got "
            f"{config.checkpoint_minutes}"
        )
    if not (_integer(config.eval_episodes) and config.eval_episodes >= 0):
        raise SettingsError(f"{where}eval_episodes must be an integer >= 0")
    if config.device not in ("auto", "cpu", "cuda"):
        raise SettingsError(f"{where}device must be auto, cpu or cuda, got {config.device!r}")
    if config.precision not in PRECISIONS:
        raise SettingsError(
            f"{where}precision must be {' or '.join(PRECISIONS)}, got {config.precision!r}"
        )
    check_hyperparams(config.algo, config.hyperparams, where)
    if "n_envs" not in config.hyperparams:
        raise SettingsError(f"{where}hyperparams lack n_envs")


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


def config_from_json(path: Path) -> Any:
    """The `TrainConfig` of a run's ``config.json``, its types and values checked."""
    from agents.training import TrainConfig

    data = read_json_file(path, "run config")
    where = f"{path}: "
    if not isinstance(data, dict):
        raise SettingsError(f"{where}not a JSON object but a {type(data).__name__}")
    if data.get("algo") == "worldmodel":
        raise SettingsError(f"{where}a World Models run; resume it with train.py worldmodel")
    check_field_types(TrainConfig, data, where)
    config = TrainConfig.from_dict(data)
    check_config(config, where)
    return config


def check_field_types(cls: type, data: dict[str, Any], where: str = "") -> None:
    """`SettingsError` unless every field of the dataclass ``cls`` found in ``data`` has its
    annotated type (str, int, float, bool, dict, list) and every required field is there."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise SettingsError(f"{where}lacks {f.name!r}")
            continue
        value = data[f.name]
        kind = typing.get_origin(hints.get(f.name)) or hints.get(f.name)
        name = getattr(kind, "__name__", "")
        expected = _TYPES.get(name) or ((kind,) if kind in (dict, list) else ())
        wrong_bool = isinstance(value, bool) and bool not in expected
        if expected and (not isinstance(value, expected) or wrong_bool):
            shown = f"{type(value).__name__} {repr(value)[:60]}"
            raise SettingsError(f"{where}{f.name} must be of type {name}, got {shown}")


def check_resumable(run_dir: Path) -> int:
    """That the latest checkpoint of ``run_dir`` (if any) can be read safely: ``latest.json``,
    the zip it names (a weights-only load of every ``.pth``: a pickle payload is refused), its
    normalization statistics (plain numeric arrays) and ``progress.csv``. Returns its step."""
    import zipfile

    from agents.sb3_zip import VARIABLES_MEMBER, ModelFileError, _load_pth, read_sb3_zip

    ckpt_dir = run_dir / "checkpoints"
    latest_path = ckpt_dir / "latest.json"
    progress = run_dir / "progress.csv"
    if progress.exists():
        try:
            with open(progress, newline="", encoding="utf-8") as f:
                for _ in csv.reader(f):
                    pass
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise SettingsError(f"{progress} is not a readable CSV file ({err})") from None
    if not latest_path.exists():
        return 0  # killed before its first checkpoint: it starts over
    latest = read_json_file(latest_path, "checkpoint index")
    where = f"{latest_path}: "
    if not isinstance(latest, dict):
        raise SettingsError(f"{where}not a JSON object")
    name, steps = latest.get("model"), latest.get("num_timesteps")
    if not isinstance(name, str) or Path(name).name != name or not name:
        raise SettingsError(f"{where}'model' must name a file in {ckpt_dir}, got {name!r}")
    if not (_integer(steps) and steps >= 0):
        raise SettingsError(f"{where}'num_timesteps' must be an integer >= 0, got {steps!r}")
    zip_path = ckpt_dir / name
    if not zip_path.is_file():
        raise SettingsError(f"{where}names {name}, which does not exist in {ckpt_dir}")
    read_sb3_zip(zip_path)  # ModelFileError: truncated, corrupt, or unsafe weights
    with zipfile.ZipFile(zip_path) as archive:
        if VARIABLES_MEMBER in archive.namelist():  # SB3's set_parameters loads it too
            try:
                _load_pth(archive, VARIABLES_MEMBER, zip_path)
            except ModelFileError as err:
                raise ModelFileError(f"{err} (the checkpoint is unsafe or corrupt)") from None
    norm = ckpt_dir / f"{zip_path.stem}.normalization.npz"
    if norm.exists():
        arrays = read_npz(norm, "normalization file")
        for key in ("ret_mean", "ret_var", "ret_count", "returns"):
            if key not in arrays or arrays[key].dtype.kind not in "biuf":
                raise InputFileError(f"{norm}: {key!r} is missing or not numeric")
    if "state" in latest:  # exact-resume state (checkpoints from 2026-12 on)
        state = latest["state"]
        if not isinstance(state, str) or Path(state).name != state or not state:
            raise SettingsError(f"{where}'state' must name a file in {ckpt_dir}, got {state!r}")
        try:
            resume_state.load(ckpt_dir / state)
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise InputFileError(
                f"{ckpt_dir / state}: not a readable resume state ({err})"
            ) from None
    return steps
