"""State synthesis: saliency weights, loss terms, targets, latent optimization, goggles, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_models import COINRUN, saved_model

import agents
import envs
from agents.evaluate import evaluate_procgen_levels
from interpret.synthesis.frames import (
    GRAY_WEIGHTS,
    ColorFrameStack,
    FrameSet,
    frame_space,
    record_frames,
)
from interpret.synthesis.generator import Generator, GeneratorConfig
from interpret.synthesis.goggles import EVAL_LEVEL_START, goggles_returns
from interpret.synthesis.latent import optimize_latents
from interpret.synthesis.novelty import nearest_frames, novelty_histogram
from interpret.synthesis.saliency import blur_and_normalize, saliency_maps
from interpret.synthesis.targets import action_target, resolve_target, t_minus, t_plus
from interpret.synthesis.training import (
    TrainSettings,
    agent_features,
    kl_loss,
    perception_features,
    perception_loss,
    reconstruction_loss,
    train_generator,
)

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks")


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    """(view, space, recorded frames) of a tiny PPO on CoinRun."""
    _, path = saved_model("ours-ppo-nature", tmp_path_factory.mktemp("ppo"))
    view = agents.load(path)
    space = frame_space(view, COINRUN)
    frames = record_frames(
        view, COINRUN, space, n_frames=16, epsilon=0.1, n_envs=4, distribution_mode="easy"
    )
    return view, space, frames


# -- saliency -------------------------------------------------------------------------------
def test_saliency_has_frame_shape_and_is_a_constant_weight(ppo):
    view, space, frames = ppo
    maps = saliency_maps(view, space, frames)
    assert maps.shape == (len(frames), space.height, space.width)
    assert maps.dtype == np.float32 and maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)
    np.testing.assert_array_equal(maps, saliency_maps(view, space, frames))  # per frame, fixed
    # In the loss it is a constant: no gradient flows into it, only into the generator.
    generator = Generator(GeneratorConfig(3, 64, 64, latent_dim=8, base_filters=8))
    x = space.from_uint8(frames[:4])
    weight = torch.as_tensor(maps[:4]).requires_grad_(True)
    recon, _, _ = generator(x)
    reconstruction_loss(recon, x, weight).backward()
    assert weight.grad is None
    assert all(p.grad is not None for p in generator.decoder.parameters())


def test_blur_and_normalize_known_answer():
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 2.0
    out = blur_and_normalize(spike, kernel_size=3)
    expected = torch.zeros(9, 9)
    expected[3:6, 3:6] = 1.0  # a 3x3 average spreads the spike evenly; normalized to 1
    torch.testing.assert_close(out[0], expected)


# -- loss terms -----------------------------------------------------------------------------
def test_reconstruction_weight_is_one_plus_saliency():
    frames = torch.zeros(1, 3, 4, 4)
    recon = frames.clone()
    recon[0, :, 1, 2] = 0.5  # error 0.5 in each channel of one pixel
    saliency = torch.zeros(1, 4, 4)
    saliency[0, 1, 2] = 0.6
    assert reconstruction_loss(recon, frames, None).item() == pytest.approx(3 * 0.25)
    assert reconstruction_loss(recon, frames, saliency).item() == pytest.approx(1.6 * 3 * 0.25)


def test_perception_loss_zero_for_perfect_reconstruction_positive_otherwise(ppo):
    view, space, frames = ppo
    x = space.from_uint8(frames)
    real = perception_features(
        view, {k: torch.as_tensor(v) for k, v in agent_features(view, space, frames).items()}
    )
    with torch.no_grad():
        assert perception_loss(view, space, x, real).item() == 0.0
        assert perception_loss(view, space, torch.rand_like(x), real).item() > 0.0


def test_kl_known_answer():
    assert kl_loss(torch.zeros(2, 5), torch.zeros(2, 5)).item() == 0.0
    assert kl_loss(torch.ones(1, 1), torch.zeros(1, 1)).item() == pytest.approx(0.5)


@pytest.mark.parametrize("term", ["reconstruction", "perception", "kl"])
def test_each_loss_term_falls_when_trained_on_a_fixed_batch(ppo, term):
    view, space, frames = ppo
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(3, 64, 64, latent_dim=8, base_filters=8))
    x = space.from_uint8(frames[:4])
    saliency = torch.as_tensor(saliency_maps(view, space, frames[:4]))
    real = perception_features(
        view, {k: torch.as_tensor(v) for k, v in agent_features(view, space, frames[:4]).items()}
    )
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)

    def value():
        recon, mean, logvar = generator(x, sample=False)
        return {
            "reconstruction": reconstruction_loss(recon, x, saliency),
            "perception": perception_loss(view, space, recon, real),
            "kl": kl_loss(mean, logvar),
        }[term]

    generator.train()
    first = value().item()
    for _ in range(8):
        optimizer.zero_grad()
        value().backward()
        optimizer.step()
    assert value().item() < first


def test_training_reports_each_term_and_resumes(ppo, tmp_path):
    view, space, frames = ppo
    data = FrameSet(
        frames, saliency_maps(view, space, frames), agent_features(view, space, frames), {}
    )
    settings = TrainSettings(epochs=1, batch_size=8, latent_dim=8)
    checkpoint = tmp_path / "ckpt.pt"
    _, history = train_generator(view, space, data, settings, checkpoint, progress=False)
    assert set(history[0]) >= {"reconstruction", "perception", "kl", "total"}
    more = TrainSettings(epochs=2, batch_size=8, latent_dim=8)
    _, resumed = train_generator(view, space, data, more, checkpoint, progress=False)
    assert len(resumed) == 2 and resumed[0] == history[0]


# -- generator ------------------------------------------------------------------------------
def test_generator_crops_atari_size_and_round_trips_files(tmp_path):
    generator = Generator(GeneratorConfig(12, 84, 84, latent_dim=8)).eval()
    x = torch.rand(2, 12, 84, 84)
    recon, mean, _ = generator(x, sample=False)
    assert recon.shape == x.shape and mean.shape == (2, 8)
    assert recon.min() >= 0 and recon.max() <= 1
    generator.save(tmp_path / "g.safetensors", {"note": 1})
    loaded, meta = Generator.load(tmp_path / "g.safetensors")
    torch.testing.assert_close(loaded.reconstruct(x), generator.reconstruct(x))
    assert meta["note"] == 1


# -- targets --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def q_and_pi():
    """Untrained views of a CartPole DQN and PPO MlpPolicy: targets read outputs through them."""
    import stable_baselines3 as sb3

    from agents.inspectable import Inspectable

    return tuple(
        Inspectable.from_model(algo("MlpPolicy", "CartPole-v1", seed=0))
        for algo in (sb3.DQN, sb3.PPO)
    )


def _grad(target, outputs_key="q", values=(1.0, 2.0, 5.0)):
    q = torch.tensor([list(values)], requires_grad=True)
    target({outputs_key: q}).sum().backward()
    return q.grad[0]


def test_target_gradients_point_the_right_way_on_a_hand_made_q_vector(q_and_pi):
    dqn, pi = q_and_pi
    # Descent moves q against the gradient.
    plus = _grad(lambda o: t_plus(dqn, o, beta=5.0))  # raise the lowest Q most
    assert (plus < 0).all() and plus.argmin() == 0
    minus = _grad(lambda o: t_minus(dqn, o, beta=5.0))  # lower the highest Q most
    assert (minus > 0).all() and minus.argmax() == 2
    spread = _grad(resolve_target("T+-", dqn, beta=5.0))  # raise the best, lower the worst
    assert spread[2] < 0 < spread[0]
    action = _grad(action_target(dqn, 1))
    torch.testing.assert_close(action, torch.tensor([0.0, -1.0, 0.0]))
    value = torch.tensor([0.3], requires_grad=True)
    t_plus(pi, {"value": value, "logits": torch.zeros(1, 3)}).sum().backward()
    assert value.grad.item() == -1.0
    logits = _grad(action_target(pi, 0), "logits")  # -log pi(0): raise logit 0, lower the others
    assert logits[0] < 0 < logits[1]


def test_user_callable_and_bad_targets(q_and_pi):
    from interpret.core.errors import InterpretError

    view = q_and_pi[0]
    assert resolve_target(len, view) is len
    assert resolve_target("math:fabs", view)(-2.0) == 2.0
    for bad in ("T0", "action:x", "math:nope"):
        with pytest.raises(InterpretError):
            resolve_target(bad, view)


# -- latent optimization, novelty -----------------------------------------------------------
def test_latent_optimization_lowers_the_energy(ppo):
    view, space, _ = ppo
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(3, 64, 64, latent_dim=8, base_filters=8))
    result = optimize_latents(generator, view, space, resolve_target("T-", view), 3, steps=15)
    assert result.images.shape == (3, 3, 64, 64)
    assert result.history[-1] < result.history[0]
    assert (result.energy < result.start_energy).all()
    assert (np.diff(result.energy) >= 0).all()  # best first


def test_novelty_known_answer():
    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    images = frames[[3, 1]].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    images[1, 0, :2, :] = np.where(images[1, 0, :2, :] > 0.5, 0.0, 1.0)  # 16 pixels changed
    index, share = nearest_frames(images, frames)
    assert index.tolist() == [3, 1]
    assert share[0] == 0.0
    changed = np.abs(images[1, 0, :2] - frames[1, :2, :, 0] / 255.0) > 0.25
    assert share[1] == pytest.approx(changed.sum() / 64)
    hist = novelty_histogram(share)
    assert sum(hist["counts"]) == 2 and hist["share_of_samples_above"][0] == 0.5


# -- frames and goggles ---------------------------------------------------------------------
def test_atari_color_twin_matches_the_agents_grayscale_stack():
    venv = envs.make_vec_env("atari:Pong", 2, 0)
    try:
        colors = ColorFrameStack(venv, 4)
        obs, color = venv.reset(), colors.reset()
        for _ in range(40):
            obs, _, dones, _ = venv.step(np.array([2, 3]))
            color = colors.step(dones)
    finally:
        venv.close()
    rgb = color.reshape(2, 84, 84, 4, 3).astype(np.float64)
    gray = (rgb * np.array(GRAY_WEIGHTS)).sum(-1)
    assert np.abs(gray - obs).max() <= 2  # same screens; rounding in resize/convert order


@pytest.mark.slow
def test_goggles_with_identity_generator_reproduce_the_agents_return(ppo):
    view, space, _ = ppo
    # The generator path (uint8 -> generator image -> identity -> observation) must give the
    # agent exactly what it sees without goggles: same actions, same returns on fixed levels.
    options = {"distribution_mode": "easy"}
    identity = goggles_returns(
        view, space, COINRUN, lambda x: x, 2, n_envs=2, progress=False, **options
    )
    levels = range(EVAL_LEVEL_START, EVAL_LEVEL_START + 2)
    direct = evaluate_procgen_levels(view, COINRUN, levels, 2, progress=False, **options)
    np.testing.assert_array_equal(identity.returns, direct.returns)
    np.testing.assert_array_equal(identity.lengths, direct.lengths)


# -- the command ----------------------------------------------------------------------------
def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "interpret", "synthesize", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


@pytest.mark.slow
def test_plain_sb3_dqn_goes_through_the_whole_path(tmp_path):
    _, path = saved_model("plain-dqn-cnn", tmp_path)
    args = [
        str(path), "--env", "atari:Pong", "--frames", "32", "--epochs", "1", "--batch-size",
        "16", "--samples", "2", "--steps", "5", "--latent-dim", "8", "--goggles-episodes", "0",
        "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--target", "T+-",
    ]  # fmt: skip
    first = _cli(*args, "--out", str(tmp_path / "report"))
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["algo"] == "dqn" and summary["frame_space"]["channels"] == 12
    assert set(summary["loss_history"]) == {"full", "recon", "vae"}
    arrays = np.load(tmp_path / "report" / "arrays.npz")
    assert arrays["synthesized"].shape == (2, 84, 84, 3) and arrays["synth_q"].shape == (2, 6)
    for name in ("frames", "full", "recon", "vae"):  # recorded frames and each reconstruction
        assert arrays[f"reconstructions_{name}"].shape == (6, 84, 84, 3)
    assert not np.array_equal(arrays["reconstructions_frames"], arrays["reconstructions_full"])
    html = (tmp_path / "report" / "index.html").read_text()
    assert "pixel space" in html and "data:image/png" in html and "Reconstructions" in html
    again = _cli(*args, "--variants", "full", "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    timings = json.loads((tmp_path / "again" / "summary.json").read_text())["timings"]
    assert "train_full_s_cached" in timings  # the generator was reused


def test_bad_input_is_one_line_exit_2(tmp_path):
    missing = _cli(str(tmp_path / "nope.zip"), "--out", str(tmp_path / "r"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    _, path = saved_model("plain-ppo-mlp", tmp_path)
    flat = _cli(str(path), "--env", "CartPole-v1", "--out", str(tmp_path / "r"))
    assert flat.returncode == 2 and "image observations" in flat.stderr
    assert not (tmp_path / "r").exists()
