"""World Models imagination: mixture decoding (mean, temperature), k-step open-loop shapes and
independent re-computations, the ``imagine MODEL`` CLI on a tiny run, bad input, and dissection
of the World Models view through the same calls as a PPO policy."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from test_world_model import car_view, one_torch_thread, tiny_model  # noqa: F401  (fixtures)
from tiny_models import saved_model

from interpret.dissection.interventions import zeroed, zeroing_effects
from interpret.dissection.units import activation_maps, dead_units, unit_statistics
from interpret.imagination.world_model import (
    dream,
    k_step_predictions,
    mixture_mean,
    open_loop,
    predict_z,
    teacher_forced_states,
)

ROOT = Path(__file__).resolve().parent.parent


def episode(steps=12, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (steps + 1, 64, 64, 3), dtype=np.uint8)
    actions = torch.as_tensor(rng.uniform(0, 1, (steps, 3)).astype("f4"))
    return frames, actions


def test_mixture_mean_is_the_weighted_sum_of_component_means():
    model = tiny_model()
    h = torch.randn(4, 16)
    out = model.mdn.mixture(h)
    assert out["mu"].shape == out["logpi"].shape == (4, 32, 5)
    mean = mixture_mean(out["logpi"], out["mu"])
    assert mean.shape == (4, 32)
    # independently: softmax of the head's raw logits, then sum_k pi_k mu_k, with numpy
    raw = model.mdn.head(h).detach().numpy().astype(np.float64)
    logits, mus = raw[:, : 32 * 5].reshape(4, 32, 5), raw[:, 32 * 5 : 64 * 5].reshape(4, 32, 5)
    pi = np.exp(logits - logits.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    assert np.allclose(mean.detach().numpy(), (pi * mus).sum(-1), atol=1e-5)
    assert torch.equal(predict_z(out), mean)


def test_low_temperature_samples_approach_the_likeliest_components_mean():
    logpi = torch.log_softmax(torch.tensor([[[0.0, 1.0, 0.3]]]), -1).expand(2000, 1, 3)
    mu = torch.tensor([[[-5.0, 2.0, 7.0]]]).expand(2000, 1, 3)
    logsigma = torch.zeros(2000, 1, 3)
    mix = {"logpi": logpi, "mu": mu, "logsigma": logsigma}
    gen = torch.Generator().manual_seed(0)
    spread = []
    for tau in (1.0, 0.1, 0.01):
        z = predict_z(mix, tau, gen)[:, 0]
        spread.append(float((z - 2.0).abs().mean()))
    assert spread[0] > spread[1] > spread[2] and spread[2] < 0.1
    assert torch.equal(predict_z(mix, 0.0)[:, 0], torch.full((2000,), 2.0))
    at_one = predict_z(mix, 1.0, gen)[:, 0]
    picked_second = float(((at_one - 2.0).abs() < 2.5).float().mean())
    assert 0.45 < picked_second < 0.6  # softmax([0, 1, 0.3])[1] = 0.51


def test_k_step_predictions_shapes_and_an_independent_first_step():
    model = tiny_model()
    frames, actions = episode(steps=12)
    result = k_step_predictions(model, frames, actions, horizon=4, show=(0, 8))
    assert result.error.shape == result.copy_error.shape == (9, 4)
    assert result.reconstruction_error.shape == (12,)
    assert set(result.shown) == {0, 8} and result.shown[8].shape == (4, 64, 64, 3)
    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        z, _ = model.vae.encoder(x)
        # from start t = 5: M reads z_0..z_5 as one sequence, predicts the mean of z_6
        out = model.mdn(z[None, :6], actions[None, :6])
        pi = out["logpi"][0, -1].exp()
        first = model.vae.decoder((pi * out["mu"][0, -1]).sum(-1)[None])
        assert np.isclose(result.error[5, 0], float((first - x[6:7]).pow(2).mean()), atol=1e-6)
        # step 2 from start 5 feeds that prediction back with the recorded action a_6
        z6 = (pi * out["mu"][0, -1]).sum(-1)[None]
        _, state = model.mdn.lstm(torch.cat([z[None, :6], actions[None, :6]], -1))
        h, _ = model.mdn.lstm(torch.cat([z6, actions[6:7]], -1)[None], state)
        mix = model.mdn.mixture(h[0, -1])
        second = model.vae.decoder((mix["logpi"].exp() * mix["mu"]).sum(-1)[None])
        assert np.isclose(result.error[5, 1], float((second - x[7:8]).pow(2).mean()), atol=1e-6)
    assert np.isclose(result.copy_error[5, 2], float((x[5] - x[8]).pow(2).mean()), atol=1e-6)


def test_open_loop_and_dream_shapes():
    model = tiny_model()
    frames, actions = episode(steps=10)
    z, _ = model.vae.encoder(torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255)
    h, c = teacher_forced_states(model, z, actions)
    assert h.shape == c.shape == (1, 10, 16)
    pred = open_loop(model, (h[:, :3], c[:, :3]), 6, lambda k, zk, hk: actions[:3])
    assert pred.shape == (3, 6, 32)
    dreamed, taken = dream(model, frames, actions, start=2, steps=7, use_controller=True)
    assert dreamed.shape == (7, 64, 64, 3) and dreamed.dtype == np.uint8
    assert taken.shape == (7, 3)
    recorded, taken = dream(model, frames, actions, start=2, steps=5, use_controller=False)
    assert np.array_equal(taken, actions[2:7].numpy()) and recorded.shape == (5, 64, 64, 3)
    # the recorded-action dream from a start is the k-step prediction from that start
    k = k_step_predictions(model, frames, actions, horizon=5, show=(2,))
    assert np.abs(recorded.astype(int) - k.shown[2].astype(int)).max() <= 1


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "interpret", "imagine", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip


def test_cli_writes_the_report_for_a_tiny_world_models_run(car_view, tmp_path):  # noqa: F811
    view, _ = car_view
    out = tmp_path / "imagine"
    result = run_cli(
        view.source, "--steps", "3", "--max-steps", "12", "--dream-steps", "5",
        "--threads", "1", "--no-progress", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["horizon"] == 3 and summary["episode_lengths"] == [12]
    assert len(summary["mse_per_step"]) == 3 and summary["starts"] == 10
    assert summary["env_id"] == "box2d:CarRacing-v3" and summary["dream"]["steps"] == 5
    with np.load(out / "arrays.npz") as arrays:
        assert arrays["frames"].shape == (13, 64, 64, 3) and arrays["error"].shape == (10, 3)
        assert arrays["dream"].shape == (5, 64, 64, 3)
        assert arrays["shown_predictions"].shape[1:] == (3, 64, 64, 3)
        assert np.allclose(arrays["error"].mean(0), summary["mse_per_step"], atol=1e-6)
        # the recorded frames' actions were the controller's: replay them with the view
        view.reset()
        again = [view.act(arrays["frames"][t][None])[0] for t in range(12)]
        assert np.allclose(np.stack(again), arrays["actions"], atol=1e-5)
    page = (out / "index.html").read_text()
    assert "World Models imagination" in page and "<svg" in page and "data:image/png" in page


def test_bad_input_is_one_line_and_exit_2(tmp_path, car_view):  # noqa: F811
    _, path = saved_model("ours-ppo-interpretable", tmp_path)
    for args in ([path], [tmp_path / "missing"], [car_view[0].source, "--steps", "0"]):
        result = run_cli(*args, "--out", tmp_path / "r")
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "not a World Models run" in run_cli(path, "--out", tmp_path / "r").stderr


def test_dissection_covers_the_world_model_view(car_view):  # noqa: F811
    view, _ = car_view
    frames = np.random.default_rng(2).integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    stats = unit_statistics(view, "vae.encoder.conv1", frames)
    assert stats.units == 32 and stats.per_observation_max.shape == (6, 32)
    x = view.preprocess(frames)
    conv1 = view.module.vae.encoder.conv1(x)
    assert np.allclose(stats.maximum, conv1.amax(dim=(0, 2, 3)).detach().numpy(), atol=1e-5)
    mu = unit_statistics(view, "vae.encoder.mu", frames)
    assert mu.shape == (32, 1, 1)
    maps = activation_maps(view, "vae.encoder.conv1", frames[:2], [0, 1], stats.threshold, (64, 64))
    assert maps.shape == (2, 64, 64)
    table = dead_units(view, frames)
    assert set(table) == set(view.layers())  # V's decoder and M run in outputs() too
    assert table["mdn.lstm"]["units"] == 16 and table["vae.decoder.deconv4"]["units"] == 3
    assert table["mdn.head"]["units"] == 3 * 32 * 5
    lstm = unit_statistics(view, "mdn.lstm", frames)
    with torch.no_grad():
        out = view.outputs(x)
        _, (h, _) = view.module.mdn.lstm(torch.cat([out["z"], out["action"]], -1)[:, None])
    assert np.allclose(lstm.per_observation_max, h[0].numpy(), atol=1e-5)
    recon = out["reconstruction"]
    assert recon.shape == (6, 3, 64, 64) and torch.allclose(recon, view.decode(out["z"]))


def test_interventions_on_the_world_model_view(car_view):  # noqa: F811
    view, _ = car_view
    frames = np.random.default_rng(3).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    split = zeroing_effects(view, "vae.encoder.conv2", [0, 5], frames)
    hook = zeroing_effects(view, "vae.encoder.conv2", [0, 5], frames, use_split=False)
    assert set(split) == set(hook) >= {"reconstruction_abs_change", "next_z_abs_change"}
    for key in split:
        assert np.allclose(split[key], hook[key], atol=1e-5), key
    # zeroing LSTM unit 3 = M's head reading h with h[3] = 0 (the controller reads the old h)
    x = view.preprocess(frames)
    with torch.no_grad():
        out = view.outputs(x)
        with zeroed(view, "mdn.lstm", [3]):
            changed = view.outputs(x)
        mdn = view.module.mdn
        _, (h, _) = mdn.lstm(torch.cat([out["z"], out["action"]], -1)[:, None])
        h = h[0].clone()
        h[:, 3] = 0.0
        mix = mdn.mixture(h)
    assert torch.allclose(changed["next_z"], (mix["logpi"].exp() * mix["mu"]).sum(-1), atol=1e-5)
    assert torch.equal(changed["action"], out["action"])


def test_recording_a_world_model_carries_its_recurrent_state(car_view):  # noqa: F811
    from interpret.core.trajectory import record_trajectories

    view, _ = car_view
    # 7-step episodes: the 16 recorded steps cross two episode ends per env
    trajs = record_trajectories(
        view, "box2d:CarRacing-v3", n_envs=2, n_steps=16, deterministic=True, max_episode_steps=7
    )
    assert [t.dones.nonzero()[0].tolist() for t in trajs] == [[6, 13], [6, 13]]
    assert view.metadata["env_id"] == "box2d:CarRacing-v3"  # dissect plays it without --env
    stateless_differs = False
    for traj in trajs:  # replay each env alone through act, resetting where an episode ended
        view.reset()
        for t in range(16):
            x = view.preprocess(traj.observations[t : t + 1])
            with torch.no_grad():
                expected = view.outputs(x, view.state)["preactivation"].numpy()
                stateless = view.outputs(x)["action"].numpy()
            action = view.act(traj.observations[t : t + 1], deterministic=True)
            np.testing.assert_allclose(traj.actions[t], action[0], atol=1e-5)
            np.testing.assert_allclose(traj.logits[t], expected[0], atol=1e-5)
            stateless_differs |= not np.allclose(stateless[0], action[0], atol=1e-4)
            if traj.dones[t]:
                view.reset()
        assert np.isnan(traj.values).all()  # no value head
    assert stateless_differs  # M's state does change C's decisions here
