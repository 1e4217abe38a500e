"""V as a VAE-GAN, and V's quality on held-out frames (pixel error, sharpness)."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import train
from agents.fileio import read_json
from world_model.model import load_weights
from world_model.training import train_vae
from world_model.vae import ConvVAE
from world_model.vae_gan import Discriminator, GanWeights, vae_gan_step
from world_model.vision_quality import laplacian_sharpness, vision_quality

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def flat_colours(n: int = 8) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(n, 3, 1, 1).expand(n, 3, 64, 64).clone()


def one_step(gan_weight: float, feature_weight: float) -> tuple[ConvVAE, Discriminator]:
    torch.manual_seed(0)
    vae, disc = ConvVAE(), Discriminator()
    vae_optim = torch.optim.Adam(vae.parameters(), lr=1e-3)
    disc_optim = torch.optim.Adam(disc.parameters(), lr=1e-3)
    torch.manual_seed(5)
    vae_gan_step(
        vae, disc, vae_optim, disc_optim, flat_colours(), GanWeights(gan_weight, feature_weight)
    )
    return vae, disc


def test_the_adversarial_loss_trains_the_decoder_and_never_the_encoder():
    plain_vae, plain_disc = one_step(gan_weight=0.0, feature_weight=0.0)
    gan_vae, gan_disc = one_step(gan_weight=100.0, feature_weight=0.0)
    for name, value in plain_vae.encoder.state_dict().items():
        assert torch.equal(value, gan_vae.encoder.state_dict()[name]), name
    assert not torch.equal(plain_vae.decoder.fc.weight, gan_vae.decoder.fc.weight)
    for name, value in plain_disc.state_dict().items():  # D steps first, on the same batch
        assert torch.equal(value, gan_disc.state_dict()[name]), name


def test_the_feature_loss_reaches_the_encoder():
    plain_vae, _ = one_step(gan_weight=0.0, feature_weight=0.0)
    feature_vae, _ = one_step(gan_weight=0.0, feature_weight=1.0)
    assert not torch.equal(plain_vae.encoder.conv1.weight, feature_vae.encoder.conv1.weight)


def test_the_discriminator_learns_to_tell_real_frames_from_reconstructions():
    torch.manual_seed(0)
    vae, disc = ConvVAE(), Discriminator()
    frozen = torch.optim.SGD(vae.parameters(), lr=0.0)  # only D learns
    disc_optim = torch.optim.Adam(disc.parameters(), lr=1e-4)  # V's learning rate
    x = flat_colours()
    first = vae_gan_step(vae, disc, frozen, disc_optim, x, GanWeights())
    for _ in range(35):
        last = vae_gan_step(vae, disc, frozen, disc_optim, x, GanWeights())
    assert last["discriminator"] < 0.8 * first["discriminator"]
    assert last["d_real"] > 0.6 > 0.4 > last["d_fake"]
    assert last["adversarial"] > first["adversarial"]  # the generator's loss rises as D wins


def test_vae_gan_stage_resumes_with_its_discriminator_and_saves_a_plain_v(tmp_path):
    from test_world_model import fake_run

    run, _ = fake_run(tmp_path, episodes=2, steps=12)
    train_vae(run, epochs=1, batch_size=16, log=lambda _: None, gan=GanWeights())
    first = torch.load(run / "checkpoints" / "vae.pt", weights_only=True)
    assert {"model", "optim", "discriminator", "discriminator_optim"} <= set(first)
    lines: list[str] = []
    train_vae(run, epochs=2, batch_size=16, log=lines.append, gan=GanWeights())
    assert len(lines) == 1 and lines[0].startswith("V epoch 2/2") and "adversarial" in lines[0]
    second = torch.load(run / "checkpoints" / "vae.pt", weights_only=True)
    assert not torch.equal(
        first["discriminator"]["logit.weight"], second["discriminator"]["logit.weight"]
    )
    rows = list(csv.DictReader((run / "vae_progress.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"discriminator", "adversarial", "feature", "d_real", "d_fake"} <= set(rows[0])
    v = load_weights(ConvVAE(), run / "vae.safetensors")  # a plain V's weights and names
    assert torch.equal(v.decoder.fc.weight, second["model"]["decoder.fc.weight"])


def test_laplacian_sharpness_of_known_images():
    flat = torch.full((1, 3, 8, 8), 0.3)
    checker = (torch.arange(8).view(8, 1) + torch.arange(8)).remainder(2).float()
    board = checker.expand(1, 3, 8, 8)
    assert laplacian_sharpness(flat).item() == 0.0
    # every interior Laplacian is +4 or -4, half each: variance 16 (ddof 1 over 36 values)
    assert laplacian_sharpness(board).item() == pytest.approx(16 * 36 / 35)
    blurred = nn.functional.avg_pool2d(board, 3, 1, 1, count_include_pad=False)
    assert laplacian_sharpness(blurred) < laplacian_sharpness(board)


class IdentityVAE(nn.Module):
    """Reconstructs every frame exactly: its code is the frame."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = lambda x: (x, x)
        self.decoder = nn.Identity()


def test_vision_quality_of_a_perfect_and_of_a_blurring_reconstruction():
    frames = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    perfect = vision_quality(IdentityVAE(), frames, batch_size=2)
    assert perfect.frames == 5 and perfect.pixel_mse == 0 and perfect.reconstruction == 0
    assert perfect.sharpness_ratio == pytest.approx(1.0)
    blurring = IdentityVAE()
    blurring.decoder = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    blurred = vision_quality(blurring, frames)
    assert 0 < blurred.sharpness_ratio < 0.5 and blurred.pixel_mse > 0
    assert blurred.reconstruction == pytest.approx(blurred.pixel_mse * 3 * 64 * 64)


def test_gan_weights_need_a_vae_gan_and_resume_keeps_the_vae_kind(tmp_path, capsys):
    out = tmp_path / "car"
    args = ["worldmodel", "--env", "box2d:CarRacing-v3", "--out", str(out), "--executor", "serial"]
    assert train.main([*args, "--gan-weight", "3"]) == 2
    assert "--gan-weight needs --vae gan" in capsys.readouterr().err
    assert not out.exists()
    tiny = ["--rollouts", "1", "--rollout-steps", "5", "--stage", "rollouts"]
    assert train.main([*args, *tiny, "--vae", "gan", "--gan-weight", "3"]) == 0
    config = read_json(out / "config.json")
    assert config["vae"] == "gan" and config["gan_weight"] == 3.0
    capsys.readouterr()
    resume = ["worldmodel", "--resume", "--out", str(out), "--executor", "serial"]
    assert train.main([*resume, "--vae", "plain"]) == 2
    assert "drop --vae (the run has --vae gan" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_vision_scores_a_tiny_vae_gan_run_on_held_out_frames(tmp_path):
    out = tmp_path / "car"
    tiny = [
        "--rollouts",
        "2",
        "--rollout-steps",
        "20",
        "--vae-epochs",
        "1",
        "--vae-batch-size",
        "16",
    ]
    args = ["worldmodel", "--env", "box2d:CarRacing-v3", *tiny, "--stage", "vae", "--vae", "gan"]
    assert train.main([*args, "--executor", "serial", "--out", str(out)]) == 0
    script = [sys.executable, str(ROOT / "scripts" / "compare_vision.py")]
    bad = subprocess.run(
        [*script, str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "not a World Models run directory" in bad.stderr
    result = subprocess.run(
        [*script, str(out), "--episodes", "1", "--steps", "10", "--workers", "1",
         "--out", str(tmp_path / "quality" / "rows.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_json(tmp_path / "quality" / "rows.json")["rows"]
    assert len(rows) == 1 and rows[0]["vae"] == "gan" and rows[0]["frames"] == 11
    assert 0 < rows[0]["pixel_mse"] < 1 and rows[0]["sharpness_real"] > 0
