"""The PolicyView seam: both adapters carry every member of the protocol, the World Models
adapter answers like the SB3 one, and a plain-SB3 CartPole MlpPolicy is inspectable end to
end with defaults only (attribution, dissection, edit --direction-file)."""

import json

import numpy as np
import pytest
import torch
from test_world_model import car_view, one_torch_thread  # noqa: F401  (fixtures)
from tiny_models import saved_model

import agents
from agents.policy_view import LayerReadersError, PolicyView
from interpret.attribution import HiddenLayerIntegratedGradients
from interpret.cli import main
from interpret.core.errors import InterpretError
from interpret.core.trajectory import record_trajectories

PROTOCOL_MEMBERS = sorted(
    name for name in {*dir(PolicyView), *PolicyView.__annotations__} if not name.startswith("_")
)


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """(view, path) of a plain-SB3 PPO MlpPolicy on CartPole after 32 training steps."""
    _model, path = saved_model("plain-ppo-mlp", tmp_path_factory.mktemp("cartpole"))
    return agents.load(path), path


def test_both_adapters_have_every_protocol_member(cartpole, car_view):  # noqa: F811
    for view in (cartpole[0], car_view[0]):
        missing = [name for name in PROTOCOL_MEMBERS if not hasattr(view, name)]
        assert not missing, f"{type(view).__name__} lacks {missing}"
    assert {"recurrent", "readers", "default_layer", "action_scores"} <= set(PROTOCOL_MEMBERS)


def test_world_model_view_answers_the_protocol(car_view):  # noqa: F811
    view, _ = car_view
    assert view.recurrent and view.state is None and view.precision == "fp32"
    assert view.default_layer() in view.layers()
    assert view.layer_shape("vae.encoder.conv4")[0] == view.module.vae.encoder.conv4.out_channels
    assert view.layer_shape("vae.encoder.mu") == (view.module.vae.encoder.mu.out_features,)
    assert view.accepts_observations((96, 96, 3)) and not view.accepts_observations((4,))
    out = view.outputs(view.preprocess(np.zeros((2, 96, 96, 3), np.uint8)))
    assert torch.equal(view.action_scores(out), out["preactivation"])
    assert view.state_value(out) is None and view.action_values(out) is None
    names = [name for name, _ in view.readers("vae.encoder.conv4")]
    assert names == ["vae.encoder.mu.weight", "vae.encoder.logvar.weight"]
    with pytest.raises(LayerReadersError, match="encoder convolution"):
        view.readers("mdn.lstm")
    # the default target attributes the controller's first action output (completeness holds)
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    result = HiddenLayerIntegratedGradients(view, view.default_layer(), n_steps=64).attribute(
        frames
    )
    assert result.target == "action:0" and result.max_relative_error < 0.05


def test_cartpole_mlp_layers_and_attribution(cartpole):
    view, _ = cartpole
    layers = view.layers()
    assert layers[0] == "observation" and view.default_layer() == "observation"
    assert "mlp_extractor.policy_net.1" in layers and "mlp_extractor.value_net.3" in layers
    obs = np.concatenate(
        [t.observations for t in record_trajectories(view, "CartPole-v1", n_envs=2, n_steps=16)]
    )
    for layer, target in [
        ("observation", "value"),
        ("observation", "logit:1"),
        ("mlp_extractor.value_net.3", "value"),
        ("mlp_extractor.policy_net.1", "logit:0"),
    ]:
        result = HiddenLayerIntegratedGradients(view, layer, target, n_steps=200).attribute(obs)
        assert result.attributions.shape == (len(obs), *view.layer_shape(layer))
        assert result.max_relative_error < 0.02, (layer, target)
    with pytest.raises(InterpretError, match="value"):  # a policy-network layer: logits only
        HiddenLayerIntegratedGradients(view, "mlp_extractor.policy_net.1").attribute(obs)


def test_cartpole_dissect_and_edit_with_defaults(cartpole, tmp_path, capsys):
    view, path = cartpole
    assert main(["dissect", str(path), "--env", "CartPole-v1", "--out", str(tmp_path / "d")]) == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert [layer["layer"] for layer in summary["layers"]] == ["observation"]
    direction = np.array([0.0, 1.0, 0.0, 0.0])  # the cart's velocity
    np.save(tmp_path / "v.npy", direction)
    argv = [
        "edit",
        str(path),
        "--direction-file",
        str(tmp_path / "v.npy"),
        "--layer",
        "observation",
    ]
    assert main([*argv, "--out", str(tmp_path / "edited")]) == 0
    edited = agents.load(tmp_path / "edited")
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    moved = obs + 3.0 * direction.astype(np.float32)
    with torch.no_grad():
        a, b = (edited.outputs(edited.preprocess(o)) for o in (obs, moved))
        original = view.outputs(view.preprocess(moved))
    for key in a:  # blind to the velocity: moving along it changes nothing
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(original["value"], b["value"])


def test_cartpole_attribute_report_on_the_default_layer(cartpole, tmp_path):
    """`attribute` on an MLP: its default layer is the observation (4 channels at one position);
    the saved attributions obey completeness against plain forward passes, and the k = 4 NMF
    directions span the non-negative attribution matrix (checked with scipy's NNLS)."""
    from scipy.optimize import nnls

    view, path = cartpole
    out = tmp_path / "a"
    argv = ["attribute", str(path), "--env", "CartPole-v1", "--features", "4", "--sample-envs",
            "2", "--sample-steps", "32", "--sample-every", "1", "--trajectories", "1",
            "--trajectory-steps", "16", "--steps", "200", "--save-attributions",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0 and (out / "index.html").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layer"] == "observation" and summary["layer_shape"] == [4]
    arrays = np.load(out / "arrays.npz")
    obs, attributions = arrays["t0_observations"], arrays["t0_attributions"]
    assert attributions.shape == (16, 4) and arrays["t0_positive"].shape == (16, 4, 1, 1)
    with torch.no_grad():  # F(x) - F(0): the observation layer's zero is a zero observation
        value = view.outputs(view.preprocess(obs))["value"].numpy()
        zero = view.outputs(view.preprocess(np.zeros((1, 4), np.float32)))["value"].numpy()
    gap = value - zero
    np.testing.assert_allclose(attributions.sum(axis=1), gap, atol=0.02 * np.abs(gap).max())
    rows = np.concatenate([np.clip(attributions, 0, None), np.clip(-attributions, 0, None)])
    directions = arrays["directions"]
    residuals = [nnls(directions.T.astype(np.float64), row.astype(np.float64))[1] for row in rows]
    assert np.linalg.norm(residuals) < 0.01 * np.linalg.norm(rows)
