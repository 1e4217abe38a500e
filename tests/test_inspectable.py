"""agents.load and the Inspectable view: split identity, agreement with SB3's own forward
pass, save/load round trips (ours and plain SB3), and safe loading."""

import pickle
import zipfile

import cloudpickle
import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from tiny_models import MODELS, ours_ppo, saved_model

import agents
from agents.sb3_zip import ModelFileError

# Layers of one output's own network (an MLP's policy or value net, a separate extractor).
BRANCH_PREFIXES = ("mlp_extractor.", "pi_features_extractor.", "vf_features_extractor.")


@pytest.fixture(scope="module", params=sorted(MODELS))
def saved(request, tmp_path_factory):
    """(name, trained SB3 model, path of its saved zip) after a few real training steps."""
    model, path = saved_model(request.param, tmp_path_factory.mktemp(request.param))
    return request.param, model, path


def _observations(model, n=6):
    """Raw env observations (HWC for images, as the env yields them before any transpose)."""
    env = model.get_env()
    base = env.venv if isinstance(env, sb3.common.vec_env.VecTransposeImage) else env
    obs = [base.reset()]
    for _ in range(n - 1):
        obs.append(base.step(np.array([env.action_space.sample() for _ in range(env.num_envs)]))[0])
    return np.concatenate(obs)[:n]


def test_split_identity_on_every_layer(saved):
    name, model, path = saved
    view = agents.load(path)
    x = view.preprocess(_observations(model))
    with torch.no_grad():
        full = view.outputs(x)
        for layer in view.layers():
            lower, upper = view.split(layer)
            parts = upper(lower(x))
            if layer.startswith(BRANCH_PREFIXES):  # determines its own output(s) only
                assert parts and set(parts) < set(full)
            else:
                assert parts.keys() == full.keys()
            for key in parts:
                torch.testing.assert_close(parts[key], full[key], rtol=1e-5, atol=1e-5)
    if "cnn" in name or "ours" in name:
        assert len(view.layers()) >= 4


def test_outputs_match_sb3_forward(saved):
    _name, model, path = saved
    view = agents.load(path)
    raw = _observations(model)
    obs_t, _ = model.policy.obs_to_tensor(raw)
    with torch.no_grad():
        out = view.outputs(view.preprocess(raw))
        if view.algo == "dqn":
            torch.testing.assert_close(out["q"], model.q_net(obs_t), rtol=1e-5, atol=1e-5)
        else:
            value = model.policy.predict_values(obs_t).squeeze(-1)
            torch.testing.assert_close(out["value"], value, rtol=1e-5, atol=1e-5)
            dist = model.policy.get_distribution(obs_t).distribution
            if "logits" in out:
                torch.testing.assert_close(torch.softmax(out["logits"], 1), dist.probs)
            else:
                torch.testing.assert_close(out["mean"], dist.mean, rtol=1e-5, atol=1e-5)
    expected, _ = model.predict(raw, deterministic=True)
    np.testing.assert_allclose(view.act(raw, deterministic=True), expected, rtol=1e-5, atol=1e-5)
    sampled = view.act(raw)
    assert all(model.action_space.contains(a.astype(model.action_space.dtype)) for a in sampled)


def test_edit_save_and_reload_in_plain_sb3(saved, tmp_path):
    _name, model, path = saved
    view = agents.load(path)
    weight = next(p for n, p in view.module.named_parameters() if n.endswith("weight"))
    with torch.no_grad():
        weight.mul_(0.5)
    out_path = view.save(tmp_path / "edited.zip", metadata={"edit": "halved"})
    plain = (sb3.DQN if view.algo == "dqn" else sb3.PPO).load(out_path)
    reloaded = dict(plain.policy.named_parameters())
    for n, p in view.module.named_parameters():
        torch.testing.assert_close(reloaded[n].detach(), p.detach())
    again = agents.load(out_path)
    assert again.metadata["edit"] == "halved"
    raw = _observations(model, 3)
    with torch.no_grad():
        a, b = view.outputs(view.preprocess(raw)), again.outputs(again.preprocess(raw))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert plain.num_timesteps == model.num_timesteps


def test_interpretable_layer_names_and_shapes(tmp_path):
    model = ours_ppo("interpretable")
    model.save(tmp_path / "m.zip")
    view = agents.load(tmp_path / "m.zip")
    assert view.layers() == [
        "1a",
        "pool1",
        "2a",
        "2b",
        "pool2",
        "3a",
        "pool3",
        "4a",
        "pool4",
        "fc1",
        "fc2",
    ]
    assert view.layer_path("2b") == "features_extractor.net.2b"
    assert view.module.get_submodule(view.layer_path("3a")).conv.weight.shape == (32, 32, 5, 5)
    lower, _ = view.split("2b")
    x = view.preprocess(np.zeros((2, 64, 64, 3), np.uint8))
    assert lower(x).shape == (2, 32, 32, 32)
    with pytest.raises(agents.UnknownLayerError, match="valid layers: 1a, pool1, 2a"):
        view.split("5a")


def test_loading_never_unpickles(saved, monkeypatch):
    _, model, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(cloudpickle, "load", refuse)
    view = agents.load(path)
    assert view.algo == ("dqn" if isinstance(model, sb3.DQN) else "ppo")


def test_trust_pickle_uses_sb3_loader(saved):
    _, model, path = saved
    view = agents.load(path, trust_pickle=True)
    raw = _observations(model, 2)
    safe = agents.load(path)
    with torch.no_grad():
        a, b = view.outputs(view.preprocess(raw)), safe.outputs(safe.preprocess(raw))
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        agents.load(tmp_path / "missing.zip")
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(ModelFileError):
        agents.load(junk)
    with pytest.raises(ModelFileError, match="no zoo model"):
        agents.load("zoo:does-not-exist")
    # Weights that do not fit the recorded architecture.
    good = tmp_path / "good.zip"
    ours_ppo("interpretable").save(good)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "data":
                data = data.replace(b'"arch": "interpretable"', b'"arch": "impala"')
            dst.writestr(item, data)
    with pytest.raises(ModelFileError, match="cannot rebuild the policy"):
        agents.load(bad)


def test_bf16_view_returns_float32_close_to_fp32(saved):
    _name, model, path = saved
    view = agents.load(path)
    x = view.preprocess(_observations(model))
    with torch.no_grad():
        full = view.outputs(x)
        view.precision = "bf16"
        half = view.outputs(x)
        lower, upper = view.split(view.layers()[-1]) if view.layers() else (None, None)
        parts = upper(lower(x)) if lower is not None else half
    assert parts and all(parts[key].dtype == torch.float32 for key in parts)
    for key in full:
        assert half[key].dtype == torch.float32
        scale = full[key].abs().max().item() + 1e-3
        # bf16 keeps 8 significant bits: a few percent of the output scale after several layers
        torch.testing.assert_close(half[key], full[key], rtol=0.0, atol=0.05 * scale)
    assert len(view.act(_observations(model), deterministic=True)) == 6


DEFAULT_LAYERS = {
    "ours-ppo-interpretable": "2b",  # the paper's layer
    "ours-ppo-interpretable-separate": "vf_features_extractor.2b",  # the default target's copy
    "ours-ppo-impala": "block3.res2",  # the last activation before the trunk's flattening
    "ours-ppo-nature": "cnn.5",
    "ours-dqn-nature": "cnn.5",
    "plain-ppo-cnn": "features_extractor.cnn.5",
    "plain-dqn-cnn": "q_net.features_extractor.cnn.5",
    "plain-ppo-mlp": "observation",
    "plain-dqn-mlp": "observation",
    "plain-ppo-continuous": "observation",
}


def test_default_layer_target_and_readers(saved):
    """Every model gets a default layer and target; projecting a channel out of the default
    layer's readers makes the outputs blind to that channel of the layer."""
    name, model, path = saved
    view = agents.load(path)
    layer = view.default_layer()
    assert layer == DEFAULT_LAYERS[name] and layer in view.layers()
    assert view.default_target() == ("max-q" if view.algo == "dqn" else "value")
    readers = view.readers(layer)
    state = view.module.state_dict()
    assert readers and all(torch.equal(state[k], m.weight) for k, m in readers)
    x = view.preprocess(_observations(model))
    lower, upper = view.split(layer)
    with torch.no_grad():
        a = lower(x)
        channel = 0
        for _, module in readers:  # zero what each reader reads of the channel
            w = module.weight
            blocks = w.view(w.shape[0], a.shape[1], -1) if w.dim() == 2 else w
            blocks[:, channel] = 0.0
        shifted = a.clone()
        shifted[:, channel] += 1.0  # through channel-wise modules: still only that channel
        before, after = upper(a), upper(shifted)
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=1e-5, atol=1e-5)
