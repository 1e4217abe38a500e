"""Model editing (Appendix A): the next layer is blind to v, the rest is bit-for-bit unchanged."""

import copy

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch
from tiny_models import untrained_model

import agents
from agents.inspectable import UnknownLayerError
from interpret.editing.projection import (
    EditError,
    next_kernels,
    project_kernel,
    project_out,
    projection,
)


@pytest.fixture(scope="module")
def saved_interpretable(tmp_path_factory):
    return untrained_model("ours-ppo-interpretable", tmp_path_factory.mktemp("interp"))


@pytest.fixture(scope="module")
def _loaded(saved_interpretable):
    view = agents.load(saved_interpretable)
    return view, copy.deepcopy(view.module.state_dict())


@pytest.fixture()
def view(_loaded):
    """The tiny interpretable PPO, loaded once, with its saved weights restored for each test."""
    loaded, pristine = _loaded
    loaded.module.load_state_dict(pristine)
    return loaded


def obs_batch(view, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *view.observation_space.shape), dtype=np.uint8)


def snapshot(view):
    """Every distinct parameter and buffer (shared extractors appear once, by first name)."""
    named = [*view.module.named_parameters(), *view.module.named_buffers()]
    return {k: v.detach().clone() for k, v in named}


def assert_only_changed(before, after, edited):
    for name, value in before.items():
        if name in edited:
            assert not torch.equal(value, after[name])
        else:
            assert torch.equal(value, after[name]), name


def test_projection_matches_the_formula_and_spans():
    v = np.array([3.0, 4.0, 0.0])
    p = projection(v)
    expected = np.eye(3) - np.outer(v, v) / 25.0
    np.testing.assert_allclose(p.numpy(), expected, atol=1e-15)
    two = projection([[1.0, 0, 0], [1.0, 1.0, 0], [2.0, 1.0, 0]])  # rank 2
    np.testing.assert_allclose(two.numpy(), np.diag([0.0, 0.0, 1.0]), atol=1e-12)


def test_bad_directions_and_layers_are_refused_without_change(view):
    before = snapshot(view)
    for bad in [np.zeros(32), np.ones(31), np.full(32, np.nan), np.ones((0, 32))]:
        with pytest.raises(EditError):
            project_out(view, "2b", bad)
    with pytest.raises(UnknownLayerError):
        project_out(view, "9z", np.ones(32))
    assert_only_changed(before, snapshot(view), edited=())


def test_2b_edit_blinds_3a_and_leaves_everything_else(view):
    rng = np.random.default_rng(0)
    v = rng.random(32)  # non-negative, like an NMF direction
    conv = view.layer_module("3a").conv
    original = copy.deepcopy(conv)
    before = snapshot(view)
    edit = project_out(view, "2b", v)
    assert edit.parameters == ("features_extractor.net.3a.conv.weight",)
    assert edit.rank == 1 and edit.layer == "2b"
    assert_only_changed(before, snapshot(view), set(edit.parameters))

    vt = torch.as_tensor(v, dtype=torch.float32)[None, :, None, None]
    # pool2's output: the input of 3a
    lower, upper = view.split("pool2")
    x = view.preprocess(obs_batch(view))
    with torch.no_grad():
        a = lower(x)
        base = upper(a)
        for t in (-2.0, 0.5, 3.0):
            shifted = upper(a + t * vt)
            torch.testing.assert_close(shifted["value"], base["value"], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(shifted["logits"], base["logits"], atol=1e-4, rtol=1e-4)
        # orthogonal to v: the edited kernel computes what the original did
        vn = vt / vt.norm()
        orth = a - (a * vn).sum(1, keepdim=True) * vn
        torch.testing.assert_close(conv(orth), original(orth), atol=1e-5, rtol=1e-4)
        # and it is not a no-op: along v the original responds, the edit does not
        assert (original(a + vt) - original(a)).abs().max() > 1e-3
        torch.testing.assert_close(conv(a + vt), conv(a), atol=1e-5, rtol=1e-4)


def test_dense_edits_through_flatten_and_at_the_head(view):
    rng = np.random.default_rng(1)
    v = rng.random(32)
    edit = project_out(view, "pool4", v)  # flatten (32 x 4 x 4) into fc1
    assert edit.parameters == ("features_extractor.net.fc1.linear.weight",)
    lower, upper = view.split("pool4")
    x = view.preprocess(obs_batch(view))
    with torch.no_grad():
        a = lower(x)
        vt = torch.as_tensor(v, dtype=torch.float32)[None, :, None, None]
        torch.testing.assert_close(upper(a + 2 * vt)["value"], upper(a)["value"], atol=1e-4, rtol=0)

    w = rng.random((2, 512))  # two directions at the last trunk layer: policy and value heads
    before = snapshot(view)
    edit = project_out(view, "fc2", w)
    assert set(edit.parameters) == {"action_net.weight", "value_net.weight"} and edit.rank == 2
    assert_only_changed(before, snapshot(view), set(edit.parameters))
    lower, upper = view.split("fc2")
    with torch.no_grad():
        h = lower(x)
        moved = h + torch.as_tensor(w[0] - 3 * w[1], dtype=torch.float32)
        torch.testing.assert_close(upper(moved)["logits"], upper(h)["logits"], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_nature_impala_and_dqn(tmp_path):
    for name, layer, ok in [
        ("ours-ppo-nature", "cnn.1", "cnn.2.weight"),
        ("ours-ppo-impala", "block1.res2", "block2.conv.weight"),
    ]:
        (tmp_path / name).mkdir()
        view = agents.load(untrained_model(name, tmp_path / name))
        full = next(n for n in view.layers() if n.endswith(layer))
        channels = next_kernels(view, full)[0][1].weight.shape[1]
        edit = project_out(view, full, np.ones(channels))
        assert edit.parameters[0].endswith(ok)
    with pytest.raises(EditError, match="mixes channels"):
        project_out(view, "block1.pool", np.ones(16))  # a residual block reads it

    (tmp_path / "dqn").mkdir()
    view = agents.load(untrained_model("ours-dqn-nature", tmp_path / "dqn"))
    last = view.layers()[-1]
    (name, head), *_ = next_kernels(view, last)
    v = np.random.default_rng(0).random(head.in_features)
    edit = project_out(view, last, v)
    assert edit.parameters == (name,) and name.startswith("q_net.q_net.")
    lower, upper = view.split(last)
    x = view.preprocess(obs_batch(view, n=2))
    with torch.no_grad():
        h = lower(x)
        moved = h + 5 * torch.as_tensor(v, dtype=torch.float32)
        torch.testing.assert_close(upper(moved)["q"], upper(h)["q"], atol=1e-4, rtol=0)


def test_project_kernel_conv_equals_left_multiplying_each_cxd_matrix():
    w = torch.randn(5, 3, 2, 2)
    p = projection(np.array([1.0, 2.0, -1.0]))
    out = project_kernel(w, p)
    for i in range(2):
        for j in range(2):  # Appendix A: kernel h x w x c x d, each c x d matrix left-multiplied
            expected = (p @ w[:, :, i, j].T.double()).T.float()
            torch.testing.assert_close(out[:, :, i, j], expected)


def test_edited_model_loads_in_plain_sb3_and_records_the_edit(view, tmp_path):
    edit = project_out(view, "2b", np.eye(32)[3])
    out = view.save(tmp_path / "edited.zip", metadata={"edit": edit.to_json()})
    plain = sb3.PPO.load(out, device="cpu")
    name = edit.parameters[0]
    assert torch.equal(plain.policy.state_dict()[name], view.module.state_dict()[name])
    assert torch.all(plain.policy.state_dict()[name][:, 3] == 0)  # one-hot v: in-channel zeroed
    again = agents.load(out)
    assert again.metadata["edit"]["layer"] == "2b"
    assert again.metadata["edit"]["parameters"] == [name]
    x = view.preprocess(obs_batch(view))
    with torch.no_grad():
        torch.testing.assert_close(again.outputs(x)["value"], view.outputs(x)["value"])
