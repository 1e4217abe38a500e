"""Dissection: thresholds on hand-made activations, dead units, activation maps, frame spacing,
interventions through hooks (restoring the model exactly, known effects), and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_models import COINRUN, saved_model
from torch import nn

import agents
from interpret.dissection.interventions import (
    intervene,
    output_change,
    rank_units,
    zeroed,
    zeroing_effects,
)
from interpret.dissection.units import (
    activation_maps,
    dead_units,
    observation_image,
    top_observations,
    unit_statistics,
)


class IdentityView:
    """A view whose one layer "x" outputs its input: observations are the activations."""

    def __init__(self):
        self.module = nn.Sequential(nn.Identity())

    def layers(self):
        return ["x"]

    def layer_module(self, name):
        assert name == "x"
        return self.module[0]

    def preprocess(self, obs):
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32)

    def outputs(self, x, state=None):
        x = self.module(x)
        return {"value": x.flatten(1).sum(1)}

    def split(self, layer):
        assert layer == "x"
        return self.module, lambda a: {"value": a.flatten(1).sum(1)}


def hand_made():
    """(25, 2, 2, 2): unit 0 takes the values 0..99 (shuffled), unit 1 is never positive."""
    values = np.random.default_rng(0).permutation(100).astype(np.float32)
    acts = np.zeros((25, 2, 2, 2), dtype=np.float32)
    acts[:, 0] = values.reshape(25, 2, 2)
    acts[:, 1] = -values.reshape(25, 2, 2)
    return acts


@pytest.mark.parametrize("batch_size", [25, 7])
def test_thresholds_on_hand_made_activations(batch_size):
    acts = hand_made()
    view = IdentityView()
    top5 = unit_statistics(view, "x", acts, quantile=0.05, batch_size=batch_size)
    # 100 values, top 5%: k = 5 values lie above t_0 = 94 (95..99)
    assert top5.threshold[0] == 94.0 and (acts[:, 0] > top5.threshold[0]).sum() == 5
    top1 = unit_statistics(view, "x", acts, quantile=0.01, batch_size=batch_size)
    assert top1.threshold[0] == 98.0 and (acts[:, 0] > top1.threshold[0]).sum() == 1
    assert top5.maximum.tolist() == [99.0, 0.0]
    assert top5.dead.tolist() == [False, True]  # unit 1: max activation 0, never fires
    np.testing.assert_allclose(top5.mean, [49.5, -49.5])
    np.testing.assert_allclose(top5.active_fraction, [0.99, 0.0])
    np.testing.assert_array_equal(top5.per_observation_max, acts.reshape(25, 2, 4).max(2))


def test_fully_connected_layer_is_dissected_as_1x1():
    acts = np.arange(40, dtype=np.float32).reshape(20, 2)
    stats = unit_statistics(IdentityView(), "x", acts, quantile=0.05)
    assert stats.shape == (2, 1, 1)
    assert stats.threshold.tolist() == [36.0, 37.0]  # k = 1 value above each threshold
    maps = activation_maps(IdentityView(), "x", acts[[19, 0]], [0, 1], stats.threshold, (4, 4))
    assert maps[0].all() and not maps[1].any()  # whole frame or nothing


def test_activation_maps_mark_where_the_unit_exceeds_its_threshold():
    acts = hand_made()
    view = IdentityView()
    stats = unit_statistics(view, "x", acts, quantile=0.05)
    same = activation_maps(view, "x", acts[:3], [0, 0, 1], stats.threshold, (2, 2))
    np.testing.assert_array_equal(same[:2], acts[:2, 0] > 94)
    assert not same[2].any()
    # Upsampled 2x2 -> 4x4: a corner cell above t_u lights that corner quadrant's corner pixel.
    corner = np.zeros((1, 2, 2, 2), dtype=np.float32)
    corner[0, 0, 0, 0] = 200.0
    up = activation_maps(view, "x", corner, [0], stats.threshold, (4, 4))[0]
    assert up[0, 0] and not up[3, 3] and up.sum() < 16


def test_top_observations_keep_their_distance_within_an_episode():
    scores = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 0.5])
    episodes = np.array([0, 0, 1, 0, 0, 2, 3])
    steps = np.array([10, 12, 11, 20, 15, 0, 0])
    # obs 1 is 2 steps from obs 0 (same episode): skipped; obs 2 is another episode
    assert top_observations(scores, 1.0, episodes, steps, top=3, spacing=5) == [0, 2, 3]
    assert top_observations(scores, 1.0, episodes, steps, top=10, spacing=5) == [0, 2, 3, 4, 5]
    assert top_observations(scores, 1.0, episodes, steps, top=2, spacing=0) == [0, 1]
    assert top_observations(scores, 9.0, episodes, steps) == []  # none above the threshold


@pytest.fixture(scope="module")
def ppo_view(tmp_path_factory):
    _, path = saved_model("ours-ppo-interpretable", tmp_path_factory.mktemp("ppo"))
    return agents.load(path)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(1).integers(0, 256, size=(12, 64, 64, 3), dtype=np.uint8)


def test_a_dead_unit_is_reported_dead(ppo_view, frames):
    conv = ppo_view.layer_module("1a").conv
    saved = {k: v.clone() for k, v in conv.state_dict().items()}
    try:
        with torch.no_grad():
            conv.weight[5].zero_()
            conv.bias[5] = -1.0
        stats = unit_statistics(ppo_view, "1a", frames)
        assert stats.dead[5] and stats.maximum[5] == 0.0
        table = dead_units(ppo_view, frames)
        assert list(table) == ppo_view.layers()
        assert table["1a"]["dead"] == int(stats.dead.sum()) >= 1 and table["1a"]["units"] == 16
    finally:
        conv.load_state_dict(saved)


def test_hooks_change_outputs_and_restore_the_model_exactly(ppo_view, frames):
    x = ppo_view.preprocess(frames)
    state = {k: v.clone() for k, v in ppo_view.module.state_dict().items()}
    with torch.no_grad():
        before = ppo_view.outputs(x)
        stats = unit_statistics(ppo_view, "2b", frames)
        alive = [u for u in range(stats.units) if not stats.dead[u]][:4]
        with zeroed(ppo_view, "2b", alive):
            inside = ppo_view.outputs(x)
        forced = {u: float(stats.threshold[u]) + 1.0 for u in alive}  # a_u(x, p) = t_u + 1
        with intervene(ppo_view, "2b", forced):
            forced_out = ppo_view.outputs(x)
        after = ppo_view.outputs(x)
    assert not torch.equal(inside["value"], before["value"])
    assert not torch.equal(forced_out["logits"], before["logits"])
    for key in before:
        assert torch.equal(before[key], after[key])
    for key, value in ppo_view.module.state_dict().items():
        assert torch.equal(value, state[key])
    assert not any(m._forward_hooks for m in ppo_view.module.modules())


def test_zeroing_a_unit_changes_the_value_by_its_weight(ppo_view, frames):
    # ours: fc2 (ReLU output) feeds value_net directly (net_arch = []), so zeroing unit u
    # changes the value by -w_u * a_u.
    lower, _ = ppo_view.split("fc2")
    x = ppo_view.preprocess(frames)
    with torch.no_grad():
        a = lower(x)
        u = int(a[0].argmax())
        assert a[0, u] > 0
        w = ppo_view.module.value_net.weight[0, u]
        before = ppo_view.outputs(x)
        with intervene(ppo_view, "fc2", {u: 0.0}):
            after = ppo_view.outputs(x)
        with intervene(ppo_view, "fc2", {u: 2.5}):
            set_to = ppo_view.outputs(x)
    change = output_change(ppo_view, before, after)
    torch.testing.assert_close(change["value_change"], -w * a[:, u], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        set_to["value"] - before["value"], w * (2.5 - a[:, u]), rtol=1e-4, atol=1e-5
    )
    effects = zeroing_effects(ppo_view, "fc2", [u, u + 1], frames, batch_size=5)
    by_hook = zeroing_effects(ppo_view, "fc2", [u, u + 1], frames, batch_size=5, use_split=False)
    for key, values in by_hook.items():
        np.testing.assert_allclose(effects[key], values, rtol=1e-4, atol=1e-6)
    assert effects["value_change"][0] == pytest.approx(float((-w * a[:, u]).mean()), rel=1e-4)
    assert set(effects) == {"policy_kl", "action_changed", "value_change", "value_abs_change"}
    assert (effects["policy_kl"] >= 0).all()


def test_ranking_orders_units_by_the_effect_of_zeroing(ppo_view):
    effects = {"value_change": np.array([0.1, -0.5, 0.2]), "policy_kl": np.array([0.3, 0.1, 0.7])}
    assert set(
        output_change(ppo_view, {"action": torch.tensor([1, 2])}, {"action": torch.tensor([1, 0])})[
            "action_abs_change"
        ].tolist()
    ) == {0.0, 2.0}  # (N,) outputs too
    key, order = rank_units(effects)
    assert key == "policy_kl" and order.tolist() == [2, 0, 1]
    key, order = rank_units(
        {"value_change": effects["value_change"], "value_abs_change": np.array([0.1, 0.5, 0.2])}
    )
    assert key == "value_abs_change" and order.tolist() == [1, 2, 0]


def test_observation_images():
    assert observation_image(np.zeros((64, 64, 3), np.uint8)).shape == (64, 64, 3)
    stack = np.zeros((84, 84, 4), np.uint8)
    stack[..., -1] = 7
    assert (observation_image(stack) == 7).all()  # the newest frame of an Atari stack
    assert observation_image(np.zeros(4, np.float32)) is None


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "interpret", *map(str, args)], capture_output=True, text=True
    )


def test_cli_unknown_layer_is_one_line(ppo_view):
    result = run_cli("dissect", ppo_view.source, "--layer", "nope", "--out", "/tmp/x")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown layer 'nope'" in result.stderr


@pytest.mark.slow
def test_cli_writes_a_report(ppo_view, tmp_path):
    out = tmp_path / "report"
    result = run_cli(
        "dissect",
        ppo_view.source,
        "--env",
        COINRUN,
        "--env-kwargs",
        "distribution_mode=easy",
        "--layer",
        "2b",
        "fc1",
        "--n-envs",
        "2",
        "--n-steps",
        "24",
        "--top",
        "2",
        "--effect-obs",
        "16",
        "--no-progress",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["observations"] == 48
    assert list(summary["dead_units"]) == ppo_view.layers()
    fc1 = summary["layers"][1]
    assert fc1["layer"] == "fc1" and fc1["shape"] == [256, 1, 1] and fc1["fully_connected_as_1x1"]
    assert sorted(fc1["ranking"]) == list(range(256)) and fc1["ranking_key"] == "policy_kl"
    with np.load(out / "arrays.npz") as arrays:
        assert arrays["2b.maps"].shape == (32, 2, 64, 64)
        assert arrays["2b.threshold"].shape == (32,)
        assert arrays["fc1.zeroing.policy_kl"].shape == (256,)
        dead = arrays["2b.dead"]
    assert summary["layers"][0]["dead"] == int(dead.sum())
    html = (out / "index.html").read_text()
    assert "data:image/png;base64" in html and "Layer 2b" in html


def test_dqn_units_are_dissected_and_zeroed_through_the_same_calls(tmp_path):
    _, path = saved_model("ours-dqn-nature", tmp_path)
    view = agents.load(path)
    frames = np.random.default_rng(2).integers(0, 256, size=(6, 84, 84, 4), dtype=np.uint8)
    layer = view.layers()[0]
    stats = unit_statistics(view, layer, frames, quantile=0.05)
    assert stats.threshold.shape == (stats.units,) and (stats.threshold <= stats.maximum).all()
    effects = zeroing_effects(view, layer, [0, 1], frames)
    assert set(effects) == {"q_change", "action_changed"}
    assert rank_units(effects)[0] == "q_change"


def test_bf16_statistics_are_close_to_fp32_and_really_bf16(ppo_view, frames):
    bf16 = agents.load(ppo_view.source, precision="bf16")
    exact = unit_statistics(ppo_view, "2b", frames, batch_size=4)
    approx = unit_statistics(bf16, "2b", frames, batch_size=4)
    scale = float(np.abs(exact.per_observation_max).max())
    difference = np.abs(approx.per_observation_max - exact.per_observation_max).max()
    assert 0 < difference < 0.05 * scale  # bf16 rounding (8 mantissa bits), not another network


@pytest.mark.parametrize("verb", ["attribute", "audit", "compare", "edit", "dissect", "synthesize"])
def test_every_network_verb_takes_precision(verb, capsys):
    from interpret.cli import build_parser

    required = {
        "compare": ["model_b"],
        "edit": ["--features", "r", "--out", "o"],
        "dissect": ["--layer", "2b", "--out", "o"],
        "synthesize": ["--out", "o"],
    }
    words = [verb, "model", *required.get(verb, [])]
    args = build_parser(words).parse_known_args([*words, "--precision", "bf16"])[0]
    assert args.precision == "bf16"
    with pytest.raises(SystemExit) as exit_info:
        build_parser(words).parse_known_args([*words, "--precision", "fp16"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
