"""train.py: bad input, short real training runs, checkpoints and resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch

import agents
import train as train_cli
from agents.fileio import read_json
from agents.presets import PROCGEN_PPO
from agents.training import (
    TrainConfig,
    build_model,
    make_training_env,
    restore_checkpoint,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent
TINY_PPO = ["--n-envs", "4", "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1"]


def run_train(*args, cwd=ROOT, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a2c", "--env", "CartPole-v1", "--timesteps", "10"], "invalid choice: 'a2c'"),
        (["ppo", "--env", "procgen:coinrn", "--timesteps", "10"], "coinrun"),
        (["ppo", "--env", "nosuchenv-v0", "--timesteps", "10"], "procgen:<game>"),
        (
            ["ppo", "--env", "procgen:coinrun", "--arch", "resnet", "--timesteps", "10"],
            "interpretable",
        ),
        (["ppo", "--env", "procgen:coinrun", "--timesteps", "-5"], "positive"),
        (
            ["ppo", "--env", "procgen:coinrun", "--timesteps", "10", "--env-kwargs", "colour=red"],
            "num_levels",
        ),
        (["dqn", "--env", "CartPole-v1", "--timesteps", "10", "--n-epochs", "5"], "n_epochs"),
        (["ppo", "--resume", "--out", "runs/does-not-exist"], "nothing to resume"),
        (["ppo", "--timesteps", "10"], "--env is required"),
        (["ppo", "--env", "CartPole-v1", "--timesteps", "10", "--eval-episodes", "-1"], ">= 0"),
        *(
            []
            if torch.cuda.is_available()
            else [
                (["ppo", "--env", "CartPole-v1", "--timesteps", "10", "--device", "cuda"], "CUDA")
            ]
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    args = [a.replace("runs/", f"{tmp_path}/") for a in args]
    out = tmp_path / "run"
    if "--out" not in args:
        args += ["--out", str(out)]
    result = run_train(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing half-written


def test_existing_run_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    result = run_train(
        "ppo", "--env", "CartPole-v1", "--timesteps", "10", "--out", str(tmp_path / "run")
    )
    assert result.returncode == 2
    assert "--resume" in result.stderr
    assert (tmp_path / "run" / "config.json").read_text() == "{}"


def _tiny_config(**overrides):
    hp = {**PROCGEN_PPO, "n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}
    return TrainConfig(
        algo="ppo",
        env_id="procgen:coinrun",
        arch="interpretable",
        timesteps=512,
        env_kwargs={"distribution_mode": "easy"},
        hyperparams=hp,
        **overrides,
    )


def test_a_separate_value_trunk_keeps_the_value_loss_out_of_the_policy_trunk(tmp_path):
    config = _tiny_config()
    config.hyperparams["separate_value_trunk"] = True
    model = build_model(config, make_training_env(config))
    policy = model.policy
    assert policy.pi_features_extractor is not policy.vf_features_extractor
    obs = torch.as_tensor(model.get_env().reset(), dtype=torch.float32)
    policy.zero_grad()
    policy.predict_values(obs).sum().backward()
    pi_grads = [p.grad for p in policy.pi_features_extractor.parameters()]
    assert all(g is None or not g.any() for g in pi_grads)
    vf_grads = [p.grad for p in policy.vf_features_extractor.parameters()]
    assert any(g is not None and g.any() for g in vf_grads)
    model.save(tmp_path / "model.zip")
    loaded = sb3.PPO.load(tmp_path / "model.zip")
    assert loaded.policy.share_features_extractor is False
    with torch.no_grad():
        torch.testing.assert_close(loaded.policy.predict_values(obs), policy.predict_values(obs))


def test_checkpoint_restores_steps_optimizer_and_normalization(tmp_path):
    config = _tiny_config()
    model = build_model(config, make_training_env(config))
    model.learn(128)
    save_checkpoint(model, tmp_path, {"algo": "ppo"})
    fresh = build_model(config, make_training_env(config))
    assert restore_checkpoint(fresh, tmp_path)[0] == model.num_timesteps == 128
    for a, b in zip(model.policy.parameters(), fresh.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    opt_a, opt_b = model.policy.optimizer.state_dict(), fresh.policy.optimizer.state_dict()
    for key in opt_a["state"]:
        for name, value in opt_a["state"][key].items():
            torch.testing.assert_close(value, opt_b["state"][key][name])
    norm_a, norm_b = model.get_env(), fresh.get_env()
    np.testing.assert_allclose(norm_a.ret_rms.var, norm_b.ret_rms.var)
    assert norm_a.ret_rms.count == norm_b.ret_rms.count
    assert read_json(tmp_path / "checkpoints" / "latest.json")["num_timesteps"] == 128


@pytest.mark.slow
def test_short_procgen_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = run_train(
        "ppo",
        "--env",
        "procgen:coinrun",
        "--arch",
        "interpretable",
        "--timesteps",
        "256",
        *TINY_PPO,
        "--env-kwargs",
        "distribution_mode=easy",
        "num_levels=50",
        "--eval-episodes",
        "4",
        "--eval-parallel",
        "4",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert f"run directory: {out}" in result.stdout
    assert "unseen levels (50..53)" in result.stdout
    for name in ["config.json", "model.zip", "normalization.npz", "progress.csv", "eval.json"]:
        assert (out / name).exists(), name
    assert list((out / "tb").iterdir())
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparams"]["n_steps"] == 32 and config["hyperparams"]["gamma"] == 0.999
    evaluation = json.loads((out / "eval.json").read_text())
    assert evaluation["test"]["episodes"] == 4 and evaluation["train"]["episodes"] == 4
    plain = sb3.PPO.load(out / "model.zip")
    assert plain.num_timesteps == 256
    assert agents.load(out).layers()[0] == "1a"


def _progress_steps(run_dir: Path) -> list[int]:
    with open(run_dir / "progress.csv", newline="") as f:
        return [int(float(r["time/total_timesteps"])) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_step_count(tmp_path):
    out = tmp_path / "run"
    args = [
        "ppo",
        "--env",
        "procgen:coinrun",
        "--arch",
        "nature",
        "--timesteps",
        "4096",
        *TINY_PPO,
        "--checkpoint-minutes",
        "0",
        "--eval-episodes",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    latest = out / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if latest.exists() and read_json(latest)["num_timesteps"] >= 256:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "model.zip").exists()
    killed_at = read_json(latest)["num_timesteps"]
    assert 0 < killed_at < 4096

    result = run_train(*args[:1], "--resume", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    model = sb3.PPO.load(out / "model.zip")
    assert model.num_timesteps == 4096
    steps = _progress_steps(out)
    assert steps == sorted(set(steps)), "progress.csv has repeated or out-of-order steps"
    assert steps[-1] == 4096 and killed_at in steps


@pytest.mark.slow
def test_dqn_on_atari_trains_and_loads(tmp_path):
    out = tmp_path / "run"
    result = run_train(
        "dqn",
        "--env",
        "atari:Pong",
        "--timesteps",
        "200",
        "--learning-starts",
        "50",
        "--buffer-size",
        "500",
        "--eval-episodes",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "mean return" in result.stdout
    view = agents.load(out)
    assert view.algo == "dqn" and "q" in view.outputs(
        view.preprocess(np.zeros((1, 84, 84, 4), np.uint8))
    )
    assert sb3.DQN.load(out / "model.zip").num_timesteps >= 200


def test_a_hyperparameter_flag_may_set_none_and_an_absent_one_keeps_the_preset():
    base = ["ppo", "--env", "procgen:coinrun", "--timesteps", "64"]
    args = train_cli.build_parser().parse_args([*base, "--clip-range-vf", "none"])
    args.eval_episodes = 0
    assert train_cli.config_from_args(args).hyperparams["clip_range_vf"] is None
    args = train_cli.build_parser().parse_args(base)
    args.eval_episodes = 0
    assert train_cli.config_from_args(args).hyperparams["clip_range_vf"] == 0.2  # the preset's
