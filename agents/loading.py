"""``agents.load``: a model file, run directory or zoo name -> ``Inspectable``.

By default nothing from the file is unpickled: the policy is rebuilt from the zip's readable
JSON (spaces, policy kwargs, our ``rlinterp.json`` record) and its weights are loaded with
``torch.load(weights_only=True)``. ``trust_pickle=True`` hands the file to SB3's own loader.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stable_baselines3 as sb3
import torch
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    BasePolicy,
)
from stable_baselines3.dqn.policies import CnnPolicy as DQNCnnPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from agents.inspectable import Inspectable
from agents.policies import POLICY_CLASSES
from agents.policy_view import PolicyView
from agents.precision import check_precision, warn_if_emulated
from agents.sb3_zip import ModelFileError, SB3Archive, read_sb3_zip

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
MODEL_FILE = "model.zip"
CONFIG_FILE = "config.json"
# Loaders of run directories that are not SB3 zips, keyed by the "algo" of their config.json,
# called as loader(run_dir, device=..., precision=...). A package registers its own on import
# (register_loader); those shipped here are imported by name when a run of theirs is first
# loaded, so agents never imports them (they import agents: dependencies point one way).
LOADERS: dict[str, Callable[..., Any]] = {}
PLUGINS = {"worldmodel": "world_model.view"}

# Policy keywords that may be passed on when rebuilding (JSON values only).
_PASSABLE_KWARGS = {
    "arch",
    "channels_last",
    "net_arch",
    "ortho_init",
    "share_features_extractor",
    "normalize_images",
    "log_std_init",
    "use_sde",
    "squash_output",
    "full_std",
    "use_expln",
}


def resolve_model_path(spec: str | Path) -> Path:
    """``zoo:NAME`` -> zoo/NAME/model.zip; a run directory -> its model.zip; else the file."""
    text = str(spec)
    if text.startswith("zoo:"):
        name = text[4:]
        path = ZOO_DIR / name / MODEL_FILE
        if not path.is_file():
            known = sorted(p.parent.name for p in ZOO_DIR.glob(f"*/{MODEL_FILE}"))
            raise ModelFileError(f"no zoo model {name!r}; available: {', '.join(known) or 'none'}")
        return path
    path = Path(spec)
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return path / MODEL_FILE
        raise ModelFileError(f"{path} is a directory without a {MODEL_FILE}")
    return path  # read_sb3_zip refuses a missing file ("model file not found")


def register_loader(algo: str, loader: Callable[..., Any]) -> None:
    """Let ``agents.load`` open run directories whose config.json has ``"algo": algo``."""
    LOADERS[algo] = loader


def run_algo(path: str | Path) -> str | None:
    """The ``"algo"`` of a run directory's config.json; None if there is none to read."""
    config = Path(path) / CONFIG_FILE
    try:
        data = json.loads(config.read_text()) if config.is_file() else None
    except (ValueError, OSError):
        return None
    algo = data.get("algo") if isinstance(data, dict) else None
    return algo if isinstance(algo, str) else None


def load(
    spec: str | Path, *, trust_pickle: bool = False, device: str = "cpu", precision: str = "fp32"
) -> PolicyView:
    """Load an SB3 PPO/DQN zip (ours or plain SB3), run directory or ``zoo:NAME``.

    ``precision="bf16"`` runs the view's forward passes under bf16 autocast (float32
    results). A World Models run directory gives a ``world_model.view.WorldModelView`` (fp32
    only); other run kinds come from ``LOADERS``."""
    check_precision(precision)
    algo = run_algo(spec)
    if algo in PLUGINS and algo not in LOADERS:
        importlib.import_module(PLUGINS[algo])  # registers its loader
    if algo in LOADERS:
        return LOADERS[algo](spec, device=device, precision=precision)
    view = _load_sb3(spec, trust_pickle, device)
    view.precision = precision
    warn_if_emulated(precision, device)
    return view


def _load_sb3(spec: str | Path, trust_pickle: bool, device: str) -> Inspectable:
    path = resolve_model_path(spec)
    archive = read_sb3_zip(path)
    algo = _algo_of(archive)
    if trust_pickle:
        model = (sb3.PPO if algo == "ppo" else sb3.DQN).load(path, device=device)
        view = Inspectable.from_model(model, metadata=archive.extra)
        view.source = path
        return view
    policy: Any = rebuild_policy(archive, algo).to(device)
    return Inspectable(policy, algo, source=path, metadata=archive.extra)


def _algo_of(archive: SB3Archive) -> str:
    if archive.extra.get("algo") in ("ppo", "dqn"):
        return archive.extra["algo"]
    keys = archive.state_dicts["policy"].keys()
    if any(k.startswith("q_net.") for k in keys):
        return "dqn"
    if any(k.startswith("action_net.") for k in keys):
        return "ppo"
    raise ModelFileError(f"{archive.path}: neither a PPO nor a DQN policy (unknown weights layout)")


def _activation(readable: Any, default: type[nn.Module]) -> type[nn.Module]:
    """Activation class from its readable form, e.g. "<class 'torch.nn...ReLU'>"."""
    if not isinstance(readable, str):
        return default
    match = re.search(r"\.(\w+)'>$", readable)
    cls = getattr(nn, match.group(1), None) if match else None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else default


def _widths(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    """Output widths of the Linear layers ``prefix.{i}.weight`` in index order."""
    found = []
    for key, value in state.items():
        m = re.fullmatch(re.escape(prefix) + r"\.(\d+)\.weight", key)
        if m:
            found.append((int(m.group(1)), value.shape[0]))
    return [w for _, w in sorted(found)]


def rebuild_policy(archive: SB3Archive, algo: str) -> nn.Module:
    """Construct the policy the archive describes and load its weights (no unpickling)."""
    state = archive.state_dicts["policy"]
    kwargs_raw = archive.policy_kwargs()
    kwargs = {k: v for k, v in kwargs_raw.items() if k in _PASSABLE_KWARGS}
    module = archive.policy_class_module() or ""
    name = archive.extra.get("policy_class") or archive.policy_class_name()
    cnn = any(".cnn." in k for k in state)

    cls: type[BasePolicy]
    if module == "agents.policies":
        default = "HWCDQNPolicy" if algo == "dqn" else "HWCActorCriticPolicy"
        cls = POLICY_CLASSES.get(name or default, POLICY_CLASSES[default])
    elif algo == "dqn":
        cls = DQNCnnPolicy if cnn else DQNPolicy
        kwargs.setdefault("net_arch", _widths(state, "q_net.q_net")[:-1])
        kwargs["activation_fn"] = _activation(kwargs_raw.get("activation_fn"), nn.ReLU)
    else:
        cls = ActorCriticCnnPolicy if cnn else ActorCriticPolicy
        if "net_arch" not in kwargs:
            kwargs["net_arch"] = {
                "pi": _widths(state, "mlp_extractor.policy_net"),
                "vf": _widths(state, "mlp_extractor.value_net"),
            }
        kwargs["activation_fn"] = _activation(kwargs_raw.get("activation_fn"), nn.Tanh)
    if cnn and module != "agents.policies":  # NatureCNN's width is read off its dense layer
        dense = [v for k, v in state.items() if k.endswith("features_extractor.linear.0.weight")]
        if dense:
            kwargs["features_extractor_kwargs"] = {"features_dim": int(dense[0].shape[0])}

    try:
        policy_class: Any = cls  # a concrete SB3 policy class, found above
        policy = policy_class(
            archive.observation_space(), archive.action_space(), lambda _: 0.0, **kwargs
        )
        policy.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError, AssertionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"{archive.path}: cannot rebuild the policy ({first})") from err
    return policy
