"""Tests for agents.sb3_zip against real SB3 model zips built here (a few seconds in total)."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.save_util import data_to_json, json_to_data

import agents
from agents.sb3_zip import ModelFileError, SB3Archive, read_sb3_zip, write_sb3_zip


class TinyImageEnv(gym.Env):
    """36x36 RGB observations (NatureCNN's minimum), 3 actions."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def _make_models(root: Path) -> dict[str, tuple[Path, Any]]:
    small = {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "device": "cpu"}
    kwargs = {"net_arch": [16], "activation_fn": torch.nn.ReLU}
    cartpole = PPO("MlpPolicy", "CartPole-v1", policy_kwargs=kwargs, seed=0, **small)
    cartpole.learn(64)  # non-empty optimizer state, num_timesteps == 64
    models = {
        "cartpole": cartpole,
        "pendulum": PPO("MlpPolicy", "Pendulum-v1", seed=0, **small),
        "ppo_cnn": PPO("CnnPolicy", TinyImageEnv(), seed=0, **small),
        "dqn_cnn": DQN("CnnPolicy", TinyImageEnv(), buffer_size=100, seed=0, device="cpu"),
    }
    out = {}
    for name, model in models.items():
        path = root / f"{name}.zip"
        model.save(path)
        out[name] = (path, model)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    return _make_models(tmp_path_factory.mktemp("sb3"))


def _copy(models: dict, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / f"{name}.zip"
    shutil.copy(models[name][0], dst)
    return dst


def _assert_tensors_equal(a: Any, b: Any) -> None:
    """Recursive equality for (optimizer) state dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a.cpu(), b.cpu())
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for key in a:
            _assert_tensors_equal(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_tensors_equal(x, y)
    else:
        assert a == b


def _assert_space_identical(rebuilt: gym.Space, original: gym.Space) -> None:
    assert rebuilt == original
    assert type(rebuilt) is type(original) and rebuilt.dtype == original.dtype
    for attr in ("low", "high", "nvec", "start"):
        if hasattr(original, attr):
            assert np.array_equal(getattr(rebuilt, attr), getattr(original, attr))


def _rewrite_member(src: Path, dst: Path, member: str, content: bytes | None) -> None:
    """Copy a zip, replacing (or with None dropping) one member."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != member:
                zout.writestr(info, zin.read(info))
        if content is not None:
            zout.writestr(member, content)


# ------------------------------------------------------------------------------- reading


@pytest.mark.parametrize("name", ["cartpole", "pendulum", "ppo_cnn", "dqn_cnn"])
def test_read_matches_model(models: dict, name: str) -> None:
    path, model = models[name]
    archive = read_sb3_zip(path)
    _assert_space_identical(archive.observation_space(), model.observation_space)
    _assert_space_identical(archive.action_space(), model.action_space)
    _assert_tensors_equal(archive.state_dicts["policy"], model.policy.state_dict())
    _assert_tensors_equal(
        archive.state_dicts["policy.optimizer"], model.policy.optimizer.state_dict()
    )
    assert "pytorch_variables" not in archive.state_dicts
    assert archive.get("num_timesteps") == model.num_timesteps
    assert archive.policy_class_module() == type(model.policy).__module__
    assert archive.policy_class_name() == type(model.policy).__name__
    assert archive.extra == {}
    assert archive.get("gamma") == model.gamma
    assert archive.get("lr_schedule", "dflt") == "dflt"  # serialized entries are not plain


def test_image_space_is_channel_first(models: dict) -> None:
    space = read_sb3_zip(models["ppo_cnn"][0]).observation_space()
    assert space.shape == (3, 36, 36) and space.dtype == np.uint8
    assert space.low.min() == 0 and space.high.max() == 255


def test_pendulum_action_bounds(models: dict) -> None:
    space = read_sb3_zip(models["pendulum"][0]).action_space()
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32
    assert np.array_equal(space.low, [-2.0]) and np.array_equal(space.high, [2.0])


def test_policy_kwargs_readable(models: dict) -> None:
    archive = read_sb3_zip(models["cartpole"][0])
    kwargs = archive.policy_kwargs()
    assert kwargs["net_arch"] == [16]
    assert isinstance(kwargs["activation_fn"], str) and "ReLU" in kwargs["activation_fn"]
    assert read_sb3_zip(models["pendulum"][0]).policy_kwargs() == {}


# ------------------------------------------------------------------------- synthetic spaces

SPACES = {
    "multi_discrete": gym.spaces.MultiDiscrete([3, 4, 5]),
    "multi_discrete_2d": gym.spaces.MultiDiscrete(
        np.array([[2, 3], [4, 5]]), start=[[1, 1], [0, 0]]
    ),
    "multi_binary": gym.spaces.MultiBinary(5),
    "multi_binary_2d": gym.spaces.MultiBinary([2, 3]),
    "discrete_start": gym.spaces.Discrete(4, start=-1, dtype=np.int32),
    "box_float64": gym.spaces.Box(-1.0, np.array([1.123456789123, 2.0]), dtype=np.float64),
    "box_int16_big": gym.spaces.Box(-3, 7, (50, 60), np.int16),
    "box_mixed_big": gym.spaces.Box(
        np.linspace(-1, 0, 2000, dtype=np.float32), 1.0, (2000,), np.float32
    ),
}
# Exactly recoverable from the readable fields alone (no pickle at all)?
FIELDS_EXACT = {"multi_discrete", "multi_discrete_2d", "multi_binary", "multi_binary_2d"}
FIELDS_EXACT |= {"discrete_start"}


def _archive_for(space: gym.Space, garble_pickle: bool = False) -> SB3Archive:
    data = json.loads(data_to_json({"observation_space": space, "action_space": space}))
    if garble_pickle:
        for entry in data.values():
            entry[":serialized:"] = base64.b64encode(b"not a pickle").decode()
    return SB3Archive(Path("synthetic.zip"), data, {}, {})


@pytest.mark.parametrize("name", sorted(SPACES))
def test_synthetic_space_from_pickle_opcodes(name: str) -> None:
    space = SPACES[name]
    archive = _archive_for(space)
    _assert_space_identical(archive.observation_space(), space)
    _assert_space_identical(archive.action_space(), space)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_synthetic_space_from_readable_fields(name: str) -> None:
    space = SPACES[name]
    archive = _archive_for(space, garble_pickle=True)
    if name in FIELDS_EXACT:
        _assert_space_identical(archive.observation_space(), space)
    else:  # rounded ("1.12345679") or abbreviated ("...") bounds: refuse rather than guess
        with pytest.raises(ModelFileError, match="exactly"):
            archive.observation_space()


def test_box_constant_bounds_use_short_repr() -> None:
    space = gym.spaces.Box(-3, 7, (50, 60), np.int16)
    repr(space)  # fills low_repr/high_repr ("-3", "7"), which SB3 then stores
    archive = _archive_for(space, garble_pickle=True)
    _assert_space_identical(archive.observation_space(), space)


def test_dict_space_unsupported() -> None:
    space = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})
    with pytest.raises(ModelFileError, match="unsupported"):
        _archive_for(space).observation_space()


# ------------------------------------------------------------------------------- writing


def test_round_trip_modified_weight(models: dict, tmp_path: Path) -> None:
    src, model = models["cartpole"]
    archive = read_sb3_zip(src)
    policy = {k: v.clone() for k, v in archive.state_dicts["policy"].items()}
    policy["action_net.weight"].zero_()
    dst = tmp_path / "edited.zip"
    write_sb3_zip(src, dst, state_dicts={"policy": policy})

    loaded = PPO.load(dst, device="cpu")
    original = PPO.load(src, device="cpu")
    edited_sd = loaded.policy.state_dict()
    assert torch.count_nonzero(edited_sd["action_net.weight"]) == 0
    for key, value in original.policy.state_dict().items():
        if key != "action_net.weight":
            assert torch.equal(edited_sd[key], value), key
    _assert_tensors_equal(
        loaded.policy.optimizer.state_dict(), original.policy.optimizer.state_dict()
    )
    assert loaded.num_timesteps == original.num_timesteps == model.num_timesteps

    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:
        assert a.namelist() == b.namelist()
        for member in a.namelist():
            if member != "policy.pth":
                assert a.read(member) == b.read(member), member
    _assert_tensors_equal(read_sb3_zip(dst).state_dicts["policy"], policy)


def test_write_in_place_and_extra(models: dict, tmp_path: Path) -> None:
    path = _copy(models, "dqn_cnn", tmp_path)
    policy = read_sb3_zip(path).state_dicts["policy"]
    policy = {k: v + 1 if k.endswith("bias") else v for k, v in policy.items()}
    write_sb3_zip(path, path, state_dicts={"policy": policy}, extra={"note": "edited"})
    added = {"policy_class": "stable_baselines3.dqn.policies:CnnPolicy", "n": 2}
    write_sb3_zip(path, path, extra={**read_sb3_zip(path).extra, **added})  # merged in

    archive = read_sb3_zip(path)
    assert archive.extra == {
        "note": "edited",
        "policy_class": "stable_baselines3.dqn.policies:CnnPolicy",
        "n": 2,
    }
    assert archive.policy_class_name() == "CnnPolicy"
    _assert_tensors_equal(archive.state_dicts["policy"], policy)
    loaded = DQN.load(path, device="cpu", buffer_size=100)
    _assert_tensors_equal(loaded.policy.state_dict(), policy)
    assert list(tmp_path.iterdir()) == [path]  # no temp files left over


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("failure", ["not_a_tensor", "torch_save", "os_replace", "bad_extra"])
def test_failed_write_leaves_destination_untouched(
    models: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    src = models["cartpole"][0]
    dst = _copy(models, "pendulum", tmp_path)  # an existing, different file
    before = _snapshot(tmp_path)
    policy = dict(read_sb3_zip(src).state_dicts["policy"])
    extra = None
    expected: type[Exception] = ModelFileError

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected failure")

    if failure == "not_a_tensor":
        policy["action_net.weight"] = [[0.0]]
    elif failure == "torch_save":
        monkeypatch.setattr(torch, "save", boom)
        expected = RuntimeError
    elif failure == "os_replace":  # fails after the temp zip has been written
        monkeypatch.setattr(os, "replace", boom)
        expected = RuntimeError
    else:
        extra = {"bad": object()}
    with pytest.raises(expected):
        write_sb3_zip(src, dst, state_dicts={"policy": policy}, extra=extra)
    assert _snapshot(tmp_path) == before


def test_write_rejects_mismatched_state_dicts(models: dict, tmp_path: Path) -> None:
    src = models["cartpole"][0]
    policy = dict(read_sb3_zip(src).state_dicts["policy"])
    cases = {
        "no state dict": {"critic": policy},
        "keys differ": {"policy": {**policy, "extra.weight": torch.zeros(1)}},
        "shape": {"policy": {**policy, "action_net.bias": torch.zeros(7)}},
    }
    for match, state_dicts in cases.items():
        with pytest.raises(ModelFileError, match=match):
            write_sb3_zip(src, tmp_path / "out.zip", state_dicts=state_dicts)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- errors


def _assert_one_line_error(path: Path, match: str) -> None:
    with pytest.raises(ModelFileError, match=match) as err:
        read_sb3_zip(path)
    assert "\n" not in str(err.value)


def test_errors(models: dict, tmp_path: Path) -> None:
    src = models["cartpole"][0]
    _assert_one_line_error(tmp_path / "missing.zip", "not found")
    _assert_one_line_error(tmp_path, "not found")  # a directory
    text = tmp_path / "model.zip"
    text.write_text("hello\nworld\n")
    _assert_one_line_error(text, "not a zip")
    _rewrite_member(src, tmp_path / "no_data.zip", "data", None)
    _assert_one_line_error(tmp_path / "no_data.zip", "missing data")
    _rewrite_member(src, tmp_path / "no_policy.zip", "policy.pth", None)
    _assert_one_line_error(tmp_path / "no_policy.zip", "missing policy.pth")
    _rewrite_member(src, tmp_path / "bad_json.zip", "data", b'{"num_timesteps": 3,\n')
    _assert_one_line_error(tmp_path / "bad_json.zip", "corrupt JSON")
    _rewrite_member(src, tmp_path / "list_json.zip", "data", b"[1, 2]")
    _assert_one_line_error(tmp_path / "list_json.zip", "not a JSON object")
    _rewrite_member(src, tmp_path / "bad_pth.zip", "policy.pth", b"garbage")
    _assert_one_line_error(tmp_path / "bad_pth.zip", "cannot load policy.pth")
    with pytest.raises(ModelFileError, match="not a zip"):
        write_sb3_zip(text, tmp_path / "out.zip")


# ------------------------------------------------------------------------ no unpickling


class _MarkerPayload:
    """Pickles to ``open(path, "w")``: unpickling it creates the marker file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_reading_never_unpickles(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(cloudpickle, "loads", forbidden)
    monkeypatch.setattr(cloudpickle, "load", forbidden)
    for name in ("cartpole", "dqn_cnn"):
        path, model = models[name]
        archive = read_sb3_zip(path)
        assert archive.observation_space() == model.observation_space
        assert archive.action_space() == model.action_space
        assert archive.policy_class_name() == type(model.policy).__name__
        archive.policy_kwargs()
        assert archive.get("num_timesteps") == model.num_timesteps


def test_malicious_payload_is_not_executed(models: dict, tmp_path: Path) -> None:
    src = models["pendulum"][0]
    marker = tmp_path / "pwned"
    evil = base64.b64encode(pickle.dumps(_MarkerPayload(marker))).decode()
    with zipfile.ZipFile(src) as z:
        data = json.loads(z.read("data"))
    data["evil"] = {":type:": "<class 'object'>", ":serialized:": evil}
    for key in ("policy_class", "observation_space", "action_space", "lr_schedule"):
        data[key][":serialized:"] = evil
    path = tmp_path / "evil.zip"
    _rewrite_member(src, path, "data", json.dumps(data).encode())

    archive = read_sb3_zip(path)
    model = models["pendulum"][1]
    # Pickles unreadable: spaces come from the (here exact) readable fields instead.
    assert archive.observation_space() == model.observation_space
    assert archive.action_space() == model.action_space
    # the policy class agents.load rebuilds (from the weights' layout: the pickle is unread)
    assert type(agents.load(path).module).__name__ == "ActorCriticPolicy"
    assert archive.get("evil") is None
    archive.policy_kwargs()
    write_sb3_zip(path, tmp_path / "copy.zip", extra={"x": 1})
    assert not marker.exists()

    # Sanity check that the payload is live: SB3's own reader does execute it.
    with zipfile.ZipFile(path) as z:
        unpickled = json_to_data(z.read("data").decode())
    assert marker.exists()
    for value in unpickled.values():
        if isinstance(value, io.IOBase):
            value.close()
