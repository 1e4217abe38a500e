"""Integrated gradients from a hidden layer, NMF features and dataset examples.

Checked against identities that must hold (completeness, the map decomposition), against
captum's LayerIntegratedGradients over the whole network, against a plain-torch integral, and
against a planted feature whose channel the NMF must find.
"""

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from tiny_models import COINRUN, saved_model
from torch import nn

import agents
import envs
from agents.inspectable import UnknownLayerError
from interpret.attribution.dataset_examples import (
    checkerboard,
    patch,
    spatial_examples,
    top_examples,
)
from interpret.attribution.integrated_gradients import (
    METHOD,
    HiddenLayerIntegratedGradients,
    target_function,
)
from interpret.attribution.nmf import fit_nmf
from interpret.core.errors import InterpretError


@pytest.fixture(scope="module")
def coinrun_obs():
    venv = envs.make_vec_env(COINRUN, 4, 0, distribution_mode="easy")
    rng = np.random.default_rng(0)
    frames = [venv.reset()]
    for _ in range(3):
        frames.append(venv.step(rng.integers(15, size=4))[0])
    venv.close()
    return np.concatenate(frames)  # (16, 64, 64, 3)


@pytest.fixture(scope="module")
def interpretable(tmp_path_factory):
    _, path = saved_model("ours-ppo-interpretable", tmp_path_factory.mktemp("interp"))
    return agents.load(path)


@pytest.fixture(scope="module")
def nature(tmp_path_factory):
    _, path = saved_model("ours-ppo-nature", tmp_path_factory.mktemp("nature"))
    return agents.load(path)


def test_riemann_right_evaluates_the_papers_alphas():
    step_sizes, alphas = approximation_parameters(METHOD)
    np.testing.assert_allclose(alphas(10), np.arange(1, 11) / 10)
    np.testing.assert_allclose(step_sizes(10), np.full(10, 0.1))


def _independent_completeness(view, layer, obs, attributions):
    """sum(attributions) - (F(A(x)) - F(0)), computed here with the view's own outputs."""
    lower, upper = view.split(layer)
    with torch.no_grad():
        a = lower(view.preprocess(obs).float())
        gap = upper(a)["value"] - upper(torch.zeros_like(a))["value"]
    return attributions.reshape(len(obs), -1).sum(axis=1) - gap.numpy()


@pytest.mark.parametrize(("model", "layer"), [("interpretable", "2b"), ("nature", "cnn.3")])
def test_completeness(request, coinrun_obs, model, layer):
    view = request.getfixturevalue(model)
    obs = coinrun_obs[:6]
    result = HiddenLayerIntegratedGradients(view, layer).attribute(obs, batch_size=4)
    assert result.attributions.shape == result.activations.shape
    assert result.alphas == pytest.approx([0.1 * i for i in range(1, 11)])
    # The reported error is the completeness gap, computed independently here.
    expected = _independent_completeness(view, layer, obs, result.attributions)
    np.testing.assert_allclose(result.completeness_error, expected, atol=1e-5)
    # With many steps the Riemann sum converges: the gap all but vanishes.
    fine = HiddenLayerIntegratedGradients(view, layer, n_steps=200).attribute(obs)
    gap = np.abs(fine.outputs - fine.baseline_outputs).max()
    assert np.abs(fine.completeness_error).max() < 0.01 * gap
    assert np.abs(fine.completeness_error).max() <= np.abs(result.completeness_error).max()


def test_matches_plain_torch_integral(interpretable, coinrun_obs):
    """mean over alpha = 0.1..1 of grad F(alpha a), times a: written out with autograd."""
    obs = coinrun_obs[:3]
    ours = HiddenLayerIntegratedGradients(interpretable, "2b").attribute(obs).attributions
    lower, upper = interpretable.split("2b")
    with torch.no_grad():
        a = lower(interpretable.preprocess(obs).float())
    grads = []
    for alpha in np.arange(1, 11) / 10:
        scaled = (alpha * a).detach().requires_grad_()
        (grad,) = torch.autograd.grad(upper(scaled)["value"].sum(), scaled)
        grads.append(grad)
    expected = (torch.stack(grads).mean(0) * a).numpy()
    # float32, one batch of all alphas vs one pass per alpha: the reduction order (and so the
    # last bits) depends on batch size and thread count; a wrong alpha would be off by ~10%.
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("target", ["value", "logit:2"])
def test_agrees_with_captum_layer_integrated_gradients(interpretable, coinrun_obs, target):
    """LayerIntegratedGradients runs the whole network per step from an input-space baseline
    (zero image); given the same layer baseline A(zero image), ours must agree."""
    obs = coinrun_obs[:4]
    view = interpretable
    ig = HiddenLayerIntegratedGradients(view, "2b", target=target)
    x = view.preprocess(obs).float()
    zero = torch.zeros_like(x)
    with torch.no_grad():
        layer_baseline = ig.lower(zero[:1])
    ours = ig.attribute(obs, baseline=layer_baseline).attributions
    fn = target_function(view, target)
    lig = LayerIntegratedGradients(lambda inp: fn(view.outputs(inp)), view.layer_module("2b"))
    theirs = lig.attribute(x, baselines=zero, n_steps=10, method="riemann_right")
    theirs = theirs.detach().numpy()
    # Float32 rounding only: ours sums the path through L2 pooling in another order (captum's
    # own distance to a float64 integral is ~3e-5 of the scale); a wrong alpha, weight or
    # baseline would be off by percents.
    np.testing.assert_allclose(ours, theirs, atol=3e-5 * np.abs(theirs).max())


@pytest.mark.parametrize("baseline", ["zero", "image"])
def test_the_pooled_integral_equals_the_plain_one(
    interpretable, coinrun_obs, monkeypatch, baseline
):
    """Above 2b the upper network starts with L2 pooling, which the integral factors through;
    forcing the plain path (every point at the layer's size) must give the same answer."""
    obs = coinrun_obs[:4]
    ig = HiddenLayerIntegratedGradients(interpretable, "2b")
    base = None
    if baseline == "image":
        with torch.no_grad():
            base = ig.lower(interpretable.preprocess(obs[-1:]).float())  # nonzero, >= 0
    assert interpretable.split_pool("2b") is not None
    pooled = ig.attribute(obs, baseline=base)
    monkeypatch.setattr(interpretable, "split_pool", lambda layer: None)
    plain = ig.attribute(obs, baseline=base)
    scale = np.abs(plain.attributions).max()
    np.testing.assert_allclose(pooled.attributions, plain.attributions, atol=3e-5 * scale)
    np.testing.assert_array_equal(pooled.outputs, plain.outputs)  # both read alpha = 1
    np.testing.assert_allclose(pooled.completeness_error, plain.completeness_error, atol=1e-5)


def test_bf16_attributions_are_complete_within_tolerance(interpretable, coinrun_obs):
    """bfloat16 autocast keeps about 3 significant digits in the network; the path, gradients
    and sums are float32, so completeness still holds to ~1% of F(a) - F(0)."""
    obs = coinrun_obs[:4]
    fp32 = HiddenLayerIntegratedGradients(interpretable, "2b").attribute(obs)
    bf16 = HiddenLayerIntegratedGradients(interpretable, "2b", precision="bf16").attribute(obs)
    assert bf16.attributions.dtype == np.float32
    expected = _independent_completeness(interpretable, "2b", obs, bf16.attributions)
    gap = np.abs(fp32.outputs - fp32.baseline_outputs).max()
    assert np.abs(expected).max() < 0.05 * gap  # against fp32 outputs, computed here
    assert np.abs(bf16.completeness_error).max() < 0.05 * gap
    error = np.linalg.norm(bf16.attributions - fp32.attributions)
    assert error < 0.2 * np.linalg.norm(fp32.attributions)
    with pytest.raises(InterpretError, match="precision"):
        HiddenLayerIntegratedGradients(interpretable, "2b", precision="fp16")


def test_targets(interpretable, coinrun_obs):
    obs = coinrun_obs[:2]
    by_name = HiddenLayerIntegratedGradients(interpretable, "2b", "logit:3").attribute(obs)
    by_callable = HiddenLayerIntegratedGradients(
        interpretable, "2b", lambda out: out["logits"][:, 3]
    ).attribute(obs)
    np.testing.assert_allclose(by_name.attributions, by_callable.attributions, atol=1e-7)
    with torch.no_grad():
        logits = interpretable.outputs(interpretable.preprocess(obs).float())["logits"]
    np.testing.assert_allclose(by_name.outputs, logits[:, 3].numpy(), rtol=1e-5)
    for bad in ("q:1", "max-q", "logit:99", "value:2", "banana"):
        with pytest.raises(InterpretError):
            HiddenLayerIntegratedGradients(interpretable, "2b", bad).attribute(obs)
    with pytest.raises(UnknownLayerError):
        HiddenLayerIntegratedGradients(interpretable, "nope")


@pytest.fixture(scope="module")
def attributions(interpretable, coinrun_obs):
    return HiddenLayerIntegratedGradients(interpretable, "2b").attribute(coinrun_obs)


def test_nmf_shapes_and_error_falls_with_k(attributions):
    errors = []
    for k in (1, 4, 16):
        features = fit_nmf(attributions.attributions, "2b", k)
        assert features.directions.shape == (k, 32)
        assert (features.directions >= 0).all()
        np.testing.assert_allclose(np.linalg.norm(features.directions, axis=1), 1, rtol=1e-5)
        errors.append(features.reconstruction_error)
    assert errors[0] > errors[1] > errors[2]


def test_feature_maps_decompose_the_attribution(attributions):
    features = fit_nmf(attributions.attributions, "2b", 4)
    maps = features.maps(attributions.attributions)
    n = len(attributions.attributions)
    assert maps.positive.shape == maps.negative.shape == (n, 4, 32, 32)
    assert maps.residual.shape == (n, 32, 32)
    assert (maps.positive >= 0).all() and (maps.negative >= 0).all()
    recomposed = (maps.positive - maps.negative).sum(axis=1) + maps.residual
    np.testing.assert_allclose(
        recomposed, attributions.attributions.sum(axis=1), atol=1e-6, rtol=1e-4
    )
    totals = maps.totals()
    assert totals.shape == (n, 5, 2)
    # Features explain most of the attribution: the residual is the smaller part.
    assert np.abs(maps.residual).sum() < (maps.positive + maps.negative).sum()


def test_activation_nmf(attributions):
    features = fit_nmf(attributions.activations, "2b", 4, source="activation")
    assert features.source == "activation" and (features.directions >= 0).all()
    with pytest.raises(InterpretError):
        fit_nmf(attributions.attributions, "2b", 4, source="activation")  # signed values
    with pytest.raises(InterpretError):
        fit_nmf(attributions.attributions, "2b", 33)


class PlantedView:
    """A duck-typed view (the members of ``PolicyView`` attribution uses): 8 channels from a
    random conv; the value reads channel 5 only, through a small nonlinear head."""

    algo = "ppo"
    channel = 5

    def __init__(self):
        torch.manual_seed(0)
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 1))

    def preprocess(self, obs):
        return torch.as_tensor(obs).permute(0, 3, 1, 2).float() / 255

    def default_target(self):
        return "value"

    def action_scores(self, out):
        return out["logits"]

    def output_roles(self):
        return {"value": "value", "logits": "logits"}

    def split(self, layer):
        def upper(a):
            pooled = nn.functional.adaptive_avg_pool2d(a[:, self.channel], 8).flatten(1)
            value = self.head(pooled).squeeze(1)
            return {"value": value, "logits": torch.zeros(len(a), 2)}

        return self.conv, upper

    def split_pool(self, layer):
        return None  # no L2 pooling above the layer


def test_planted_feature_is_the_top_nmf_direction():
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8)
    view = PlantedView()
    result = HiddenLayerIntegratedGradients(view, "conv").attribute(obs)
    assert (result.activations[:, PlantedView.channel] > 0).any()
    features = fit_nmf(result.attributions, "conv", 3)
    top = features.directions[0]
    assert top[PlantedView.channel] > 0.99
    # Activations on their own do not single the channel out.
    by_activation = fit_nmf(result.activations, "conv", 3, source="activation")
    assert by_activation.directions[0][PlantedView.channel] < 0.9


def test_dataset_examples():
    response = np.zeros((5, 4, 4))
    response[0, 1, 1], response[1, 1, 1], response[2, 0, 3], response[3, 2, 2] = 9, 8, 7, 1
    top = top_examples(response, n=3, per_position=1)
    assert [(e.index, e.y, e.x) for e in top] == [(0, 1, 1), (2, 0, 3), (3, 2, 2)]
    obs = np.full((5, 8, 8, 3), 10, dtype=np.uint8)
    corner = patch(obs[0], 0, 0, stride=2, size=6)  # centred on pixel (1, 1)
    assert corner.shape == (6, 6, 3)
    np.testing.assert_array_equal(corner[:2, :2], checkerboard(6, 6)[:2, :2])  # off-screen
    assert (corner[2:, 2:] == 10).all()
    mosaic = spatial_examples(response, obs, cell=2, max_reuse=1)
    assert mosaic.shape == (8, 8, 4)
    assert mosaic[..., 3].max() == 255 and mosaic[4:, :4, 3].max() == 0  # no response there


def test_bookmarks_at_most_one_per_episode():
    from interpret.attribution.report import bookmarks
    from interpret.core.trajectory import Trajectory

    adv = np.array([0.1, -2.0, 1.5, 0.0, 3.0, -0.5, -1.0, 0.2], dtype=np.float32)
    dones = np.array([0, 0, 1, 0, 1, 0, 0, 0], dtype=bool)  # episodes [0,3), [3,5), [5,8)
    zeros = np.zeros(8, dtype=np.float32)
    traj = Trajectory(
        observations=np.zeros((8, 4, 4, 3), np.uint8), actions=np.zeros(8, np.int64),
        rewards=zeros, dones=dones, values=zeros, logits=np.zeros((8, 2), np.float32),
        level_seeds=np.zeros(8, np.int64), level_complete=dones, advantages=adv,
    )  # fmt: skip
    marks = bookmarks([traj], n=5)
    assert [(m["step"], m["kind"]) for m in marks] == [
        (1, "failure"),
        (6, "failure"),
        (4, "success"),
    ]
