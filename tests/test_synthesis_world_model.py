"""State synthesis for the World Models agent's controller, through its inspectable view."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop

import agents
from interpret.core.errors import InterpretError
from interpret.synthesis.frames import frame_space, record_frames
from interpret.synthesis.goggles import EVAL_LEVEL_START, goggles_returns
from interpret.synthesis.latent import agent_outputs
from interpret.synthesis.saliency import PolicyOutput, relu_module_count, saliency_maps
from interpret.synthesis.targets import action_target, resolve_target
from world_model.model import WorldModel, save_weights
from world_model.run import WorldModelConfig, create_run

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks")
COINRUN = "procgen:coinrun"
OPTIONS = {"distribution_mode": "easy"}


@pytest.fixture(scope="module")
def wm_run(tmp_path_factory):
    """A tiny World Models run on CoinRun (as ``car_view`` in test_world_model.py builds one):
    random V and M, a controller with non-zero weights; discrete actions (15)."""
    run = tmp_path_factory.mktemp("wm") / "coinrun"
    config = create_run(WorldModelConfig(env_id=COINRUN, hidden=16, env_kwargs=OPTIONS), run)
    torch.manual_seed(0)
    model = WorldModel.from_config(config.__dict__)
    save_weights(model.vae, run / "vae.safetensors")
    save_weights(model.mdn, run / "mdn.safetensors")
    with torch.no_grad():
        model.controller.linear.weight.normal_(0, 0.5)
    save_weights(model.controller, run / "controller_best.safetensors")
    return run


@pytest.fixture
def wm(wm_run):
    view = agents.load(wm_run)
    return view, frame_space(view, COINRUN)


def test_frame_space_is_the_64x64_frames_v_sees(wm):
    view, space = wm
    assert view.algo == "worldmodel"
    assert (space.height, space.width, space.channels, space.gray_stack) == (64, 64, 3, False)


def test_gradient_flows_from_a_frame_tensor_and_matches_the_numpy_path(wm):
    view, _ = wm
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    x = torch.tensor(frames, dtype=torch.float32, requires_grad=True)
    out = view.outputs(view.preprocess(x))
    reference = view.outputs(view.preprocess(frames))  # numpy (cv2) path
    torch.testing.assert_close(out["scores"], reference["scores"])
    # the view's encoder stages (with nn.ReLU modules) equal V's own encoder
    mu, _ = view.module.vae.encoder(view.preprocess(frames))
    torch.testing.assert_close(out["z"], mu)
    out["scores"][:, 3].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_action_target_gradient_raises_the_chosen_actions_probability(wm):
    view, space = wm
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    k = 5
    target = action_target(view, k)
    x = images.clone().requires_grad_(True)
    energy = target(agent_outputs(view, space, x))
    with torch.no_grad():  # independent answer: -log softmax of the controller's scores
        scores = view.module.controller(
            torch.cat([view.module.vae.encoder(images)[0], torch.zeros(1, 16)], dim=1)
        )
        expected = -torch.log_softmax(scores, dim=1)[:, k]
    torch.testing.assert_close(energy.detach(), expected)
    energy.sum().backward()
    stepped = (images - 1e-3 * x.grad / x.grad.norm()).clamp(0, 1)
    with torch.no_grad():
        after = torch.log_softmax(agent_outputs(view, space, stepped)["scores"], dim=1)[:, k]
    assert after > -expected  # a small step against the gradient makes action k likelier


def test_value_targets_are_a_clear_error_and_callables_work(wm):
    view, space = wm
    out = agent_outputs(view, space, torch.rand(2, 3, 64, 64))
    for name in ("T+", "T-"):
        with pytest.raises(InterpretError, match="needs a value"):
            resolve_target(name, view)(out)
    energy = resolve_target(lambda o: -o["z"][:, 0], view)(out)
    torch.testing.assert_close(energy, -out["z"][:, 0])


def test_guided_backprop_overrides_the_encoders_relus(wm):
    view, space = wm
    assert relu_module_count(view) == 4 and relu_module_count(view.module) == 0
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    model = PolicyOutput(view, space)
    guided = GuidedBackprop(model).attribute(images.clone().requires_grad_(True), target=0)
    x = images.clone().requires_grad_(True)
    model(x)[:, 0].sum().backward()
    # Guided backprop zeroes negative gradients at each ReLU: it must differ from the gradient.
    assert not torch.allclose(guided, x.grad)
    frames = (images.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    maps = saliency_maps(view, space, frames)
    assert maps.shape == (1, 64, 64) and maps.max() == pytest.approx(1.0)


def test_recording_carries_and_restarts_the_recurrent_state(wm):
    view, space = wm
    frames = record_frames(view, COINRUN, space, n_frames=12, epsilon=0.2, n_envs=3, **OPTIONS)
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    assert view._state is None  # left reset
    view.act(frames[:3])
    h_before = view._state[0].clone()
    view.reset([1])
    assert torch.equal(view._state[0][0, 1], torch.zeros(16)) and h_before[0, 1].abs().sum() > 0
    assert torch.equal(view._state[0][:, 0], h_before[:, 0])


@pytest.mark.slow
def test_goggles_with_an_identity_lens_reproduce_the_agents_return(wm):
    view, space = wm
    identity = goggles_returns(view, space, COINRUN, lambda x: x, 1, progress=False, **OPTIONS)
    direct = goggles_returns(view, space, COINRUN, None, 1, progress=False, **OPTIONS)
    np.testing.assert_array_equal(identity.level_seeds, [EVAL_LEVEL_START])
    np.testing.assert_array_equal(identity.returns, direct.returns)
    np.testing.assert_array_equal(identity.lengths, direct.lengths)
    assert (direct.lengths > 0).all()


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "interpret", "synthesize", *args], capture_output=True, text=True
    )


@pytest.mark.slow
def test_synthesize_cli_on_a_world_models_run(wm_run, tmp_path):
    args = [
        str(wm_run), "--frames", "16", "--epochs", "1", "--batch-size", "8", "--samples", "2",
        "--restarts", "1", "--steps", "3", "--latent-dim", "8", "--variants", "full",
        "--goggles-episodes", "1", "--cache-dir", str(tmp_path / "cache"), "--no-progress",
        "--target", "action:2", "--threads", "1",
    ]  # fmt: skip
    done = _cli(*args, "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr
    report = tmp_path / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["algo"] == "worldmodel" and summary["env_id"] == COINRUN
    assert summary["frame_space"] == {"height": 64, "width": 64, "channels": 3, "gray_stack": False}
    assert set(summary["goggles"]) == {"agent", "full"}
    assert summary["goggles"]["agent"]["episodes"] == 1
    arrays = np.load(report / "arrays.npz")
    assert arrays["synthesized"].shape == (2, 64, 64, 3)
    assert "data:image/png" in (report / "index.html").read_text()


def test_value_target_on_a_world_models_run_is_one_line_exit_2(wm_run, tmp_path):
    done = _cli(str(wm_run), "--target", "T-", "--frames", "8", "--epochs", "1", "--samples",
                "1", "--steps", "1", "--goggles-episodes", "0", "--variants", "full",
                "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--out",
                str(tmp_path / "r"))  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "needs a value" in done.stderr
