"""Exact resume: a run killed at several points and resumed ends bit-identical to one that ran
through, with the same progress.csv step column; old checkpoints (no resume state) resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import train as train_cli
from agents import zoo
from agents.fileio import read_json, write_json
from agents.presets import PROCGEN_PPO
from agents.training import TrainConfig, build_model, make_training_env, restore_checkpoint, train

ROOT = Path(__file__).resolve().parent.parent

# One piece of a run in a child process, killed with os._exit (no cleanup, like kill -9) when
# the step count reaches KILL_AT; KILL_AT 0 lets the piece run to the end.
PIECE = """
import json, os, sys
import torch
from pathlib import Path
from stable_baselines3.common.callbacks import BaseCallback
from agents.training import TrainConfig, train

torch.set_num_threads(1)
config = TrainConfig(**json.loads(sys.argv[1]))
run_dir, resume, kill_at = Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])

class Kill(BaseCallback):
    def _on_step(self):
        if kill_at and self.num_timesteps >= kill_at:
            os._exit(9)
        return True

train(config, run_dir, resume=resume, progress=False, extra_callbacks=(Kill(),))
"""


def _config(**overrides) -> TrainConfig:
    hp = {**PROCGEN_PPO, "n_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 2}
    settings = {
        "algo": "ppo",
        "env_id": "procgen:coinrun",
        "arch": "interpretable",
        "timesteps": 320,  # 10 rollouts of 32 steps
        "env_kwargs": {"distribution_mode": "easy", "paint_vel_info": True},
        "hyperparams": hp,
        "eval_episodes": 0,
    }
    return TrainConfig(**{**settings, **overrides})


def _run_piece(config: TrainConfig, run_dir: Path, resume: bool, kill_at: int) -> int:
    settings = json.dumps(asdict(config))
    result = subprocess.run(
        [sys.executable, "-c", PIECE, settings, str(run_dir), str(int(resume)), str(kill_at)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 9), result.stderr
    return result.returncode


def _final_weights(run_dir: Path, config: TrainConfig) -> dict[str, torch.Tensor]:
    model = build_model(config, make_training_env(config))
    model.set_parameters(str(run_dir / "model.zip"), exact_match=True)
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def _progress(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    through = _config(checkpoint_minutes=1e6)  # no checkpoint until the end
    assert _run_piece(through, tmp_path / "through", resume=False, kill_at=0) == 0

    pieces = _config(checkpoint_minutes=0)  # a checkpoint between every update and rollout
    run = tmp_path / "killed"
    assert _run_piece(pieces, run, resume=False, kill_at=72) == 9  # mid-rollout
    assert read_json(run / "checkpoints" / "latest.json")["num_timesteps"] == 64
    assert _run_piece(pieces, run, resume=True, kill_at=200) == 9
    assert _run_piece(pieces, run, resume=True, kill_at=0) == 0

    expected, got = _final_weights(tmp_path / "through", through), _final_weights(run, pieces)
    for name, value in expected.items():
        assert torch.equal(value, got[name]), f"{name} differs after resuming"
    rows_a, rows_b = _progress(tmp_path / "through"), _progress(run)
    steps = [r["time/total_timesteps"] for r in rows_b]
    assert steps == [r["time/total_timesteps"] for r in rows_a]
    assert [r["time/iterations"] for r in rows_b] == [str(i) for i in range(1, 11)]
    for key in ("train/loss", "train/value_loss", "rollout/ep_rew_mean", "train/n_updates"):
        assert [r.get(key) for r in rows_b] == [r.get(key) for r in rows_a], key
    seconds = [int(r["time/time_elapsed"]) for r in rows_b]
    assert seconds == sorted(seconds), "training time restarted at a resume"
    pieces_record = read_json(run / "config.json")["pieces"]
    assert [p["from_step"] for p in pieces_record] == [0, 64, 192]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished 64-step run with a checkpoint (and its resume state) at the end."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    config = _config(checkpoint_minutes=0, timesteps=64)
    run = tmp_path_factory.mktemp("tiny") / "run"
    train(config, run, progress=False)
    torch.set_num_threads(before)
    return config, run


def test_resume_state_round_trips_env_rng_and_counters(tiny_run, one_torch_thread):
    config, run = tiny_run
    fresh = build_model(config, make_training_env(config))
    steps, elapsed = restore_checkpoint(fresh, run)
    assert steps == 64 and elapsed is not None and elapsed > 0
    env = fresh.get_env().venv
    assert fresh._last_obs.shape == (2, 64, 64, 3)
    np.testing.assert_array_equal(fresh._last_obs, env.observations())
    assert fresh.iteration_offset == 2 and fresh._n_updates == 4


def test_zoo_snapshot_and_restore_keep_the_resumable_state(tiny_run, tmp_path, one_torch_thread):
    config, run = tiny_run
    assert zoo.main(["snapshot", str(run), str(tmp_path / "snap")]) == 0
    card = (tmp_path / "snap" / "README.md").read_text()
    assert "steps so far: 64 of 64" in card and "--piece-minutes" in card
    assert (tmp_path / "snap" / "curve.png").is_file()
    names = sorted(p.name for p in (tmp_path / "snap" / "checkpoints").iterdir())
    assert names == [
        "latest.json",
        "step_000000000064.normalization.npz",
        "step_000000000064.state.npz",
        "step_000000000064.zip",
    ]
    assert zoo.main(["restore", str(tmp_path / "snap"), str(tmp_path / "back")]) == 0
    a = build_model(config, make_training_env(config))
    b = build_model(config, make_training_env(config))
    assert restore_checkpoint(a, run)[0] == restore_checkpoint(b, tmp_path / "back")[0] == 64
    np.testing.assert_array_equal(a._last_obs, b._last_obs)
    for x, y in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(x, y)
    png = tmp_path / "curve.png"
    assert zoo.main(["curve", str(run), str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert zoo.main(["restore", str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2


def test_zoo_card_counts_steps_to_the_checkpoint_a_resume_starts_from(tiny_run, tmp_path):
    _, finished = tiny_run
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    rows = _progress(run)
    later = {**rows[-1], "time/total_timesteps": "96", "time/time_elapsed": "1e6"}
    with open(run / "progress.csv", "w", newline="") as f:  # a piece killed after logging 96
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, later])
    card = zoo.status_markdown(run)
    assert "steps so far: 64 of 64" in card
    assert f"training time {float(rows[-1]['time/time_elapsed']) / 3600:.2f} h" in card
    (run / "checkpoints" / "latest.json").unlink()  # no checkpoint: progress.csv's last row
    assert "steps so far: 96 of 64" in zoo.status_markdown(run)


def test_zoo_publish_writes_a_weights_only_entry_with_measured_scores(
    tiny_run, tmp_path, monkeypatch, one_torch_thread
):
    from stable_baselines3 import PPO

    import agents
    from agents.evaluate import UNLIMITED_TEST_START, evaluate_procgen_levels
    from agents.sb3_zip import read_sb3_zip

    config, run = tiny_run
    entry = tmp_path / "zoo" / "tiny-ppo"
    args = ["publish", str(run), str(entry), "--episodes", "3", "--parallel", "2"]
    assert zoo.main(args) == 0
    names = sorted(p.name for p in entry.iterdir())
    assert names == sorted(
        ["model.zip", "config.json", "progress.csv", "eval.json", "curve.png", "README.md"]
    )
    published, source = read_sb3_zip(entry / "model.zip"), read_sb3_zip(run / "model.zip")
    assert published.state_dicts["policy.optimizer"]["state"] == {}  # no optimizer state
    assert source.state_dicts["policy.optimizer"]["state"]  # which the run's model has
    for key, value in source.state_dicts["policy"].items():
        assert torch.equal(published.state_dicts["policy"][key], value)
    assert (entry / "model.zip").stat().st_size < (run / "model.zip").stat().st_size
    loaded = PPO.load(entry / "model.zip", device="cpu")  # plain SB3 loads it
    assert loaded.num_timesteps == 64
    monkeypatch.setattr("agents.loading.ZOO_DIR", entry.parent)
    view = agents.load("zoo:tiny-ppo")
    evaluation = read_json(entry / "eval.json")
    levels = list(range(UNLIMITED_TEST_START, UNLIMITED_TEST_START + 3))
    for mode, greedy in (("sampled", False), ("greedy", True)):
        again = evaluate_procgen_levels(
            view, config.env_id, levels, 2, deterministic=greedy, seed=0, **config.env_kwargs
        ).summary()
        assert evaluation[mode] == again  # measured on unseen levels, not copied from training
    card = (entry / "README.md").read_text()
    assert "zoo:tiny-ppo" in card and "total steps: 64" in card
    assert f"{evaluation['greedy']['completed']}/3 levels completed" in card
    assert evaluation["model_from"] == "model.zip"  # named as in the run, not a temp path
    assert "## Notes" not in card
    assert zoo.main(args) == 2  # an existing entry is replaced only with --force
    note = tmp_path / "note.md"
    note.write_text("Stopped at the step cap; target not reached.\n")
    missing = ["--note-file", str(tmp_path / "absent.md"), "--force"]
    assert zoo.main([*args, *missing]) == 2
    assert (entry / "README.md").read_text() == card  # refused before any work
    assert zoo.main([*args, "--force", "--note-file", str(note)]) == 0
    assert (
        (entry / "README.md")
        .read_text()
        .endswith("## Notes\n\nStopped at the step cap; target not reached.\n")
    )


def test_zoo_publish_of_a_checkpoint_ends_the_entry_at_its_step(
    tiny_run, tmp_path, one_torch_thread
):
    from agents.curves import plot_curve

    _, finished = tiny_run
    run, then = tmp_path / "run", tmp_path / "then"  # then: the run as it was at step 32
    shutil.copytree(finished, run)
    rows = _progress(run)
    assert [float(r["time/total_timesteps"]) for r in rows] == [32, 64]
    for row, rate in zip(rows, ("0.25", "0.75"), strict=True):
        row["rollout/level_complete_rate"] = rate  # so that the curve shows evaluations
    with open(run / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for steps in (32, 64):
        record = {"num_timesteps": steps, "test": {"completion_rate": steps / 100}}
        write_json(run / "evals" / f"step_{steps:012d}.json", record)
    shutil.copytree(run, then)
    lines = (run / "progress.csv").read_bytes().splitlines(keepends=True)
    (then / "progress.csv").write_bytes(b"".join(lines[:2]))
    (then / "evals" / "step_000000000064.json").unlink()
    entry = tmp_path / "entry"
    args = ["publish", str(run), str(entry), "--episodes", "1", "--parallel", "1"]
    assert zoo.main([*args, "--checkpoint", "step_000000000032.zip"]) == 0
    assert read_json(entry / "eval.json")["num_timesteps"] == 32
    assert (entry / "progress.csv").read_bytes() == (then / "progress.csv").read_bytes()
    assert "total steps: 32;" in (entry / "README.md").read_text()
    curve = (entry / "curve.png").read_bytes()
    assert curve == plot_curve(then, tmp_path / "then.png").read_bytes()
    assert curve != plot_curve(run, tmp_path / "run.png").read_bytes()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gamma", "0.9"], "drop --gamma"),
        (["--n-steps", "8"], "drop --n-steps"),
        (["--env", "procgen:maze"], "drop --env"),
        (["--timesteps", "-5"], "--timesteps must be a positive integer"),
        (["--piece-minutes", "0"], "--piece-minutes must be positive"),
    ],
)
def test_resume_refuses_what_it_cannot_change(tiny_run, flags, message, capsys):
    _, run = tiny_run
    before = (run / "config.json").read_text()
    assert train_cli.main(["ppo", "--resume", "--out", str(run), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert (run / "config.json").read_text() == before


def test_resumed_piece_may_change_optimisation_settings_and_records_it(tiny_run, tmp_path):
    config, finished = tiny_run
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    flags = ["ppo", "--resume", "--out", str(run), "--timesteps", "96", "--batch-size", "8"]
    flags += ["--lr", "0.001", "--clip-range-vf", "none", "--piece-eval", "0"]
    flags += ["--micro-batch-size", "4"]
    assert train_cli.main([*flags, "--no-progress"]) == 0
    saved = read_json(run / "config.json")
    changes = {"batch_size": 8, "learning_rate": 0.001, "clip_range_vf": None}
    changes["micro_batch_size"] = 4
    assert saved["hyperparams"] == {**config.hyperparams, **changes}
    last = saved["pieces"][-1]
    assert last["from_step"] == 64
    assert last["changed"] == {
        "batch_size": [16, 8],
        "clip_range_vf": [0.2, None],  # "none" switches value clipping off
        "learning_rate": [5e-4, 0.001],
        "micro_batch_size": [None, 4],
    }
    assert "changed" not in saved["pieces"][0]
    card = zoo.status_markdown(run)
    changed = "batch_size 16 -> 8, clip_range_vf 0.2 -> None, learning_rate 0.0005 -> 0.001"
    assert f"{changed}, micro_batch_size None -> 4 |" in card
    steps = [int(r["time/total_timesteps"]) for r in _progress(run)]
    assert steps == [32, 64, 96]  # one progress.csv across the change
    args = train_cli.build_parser().parse_args(["ppo", "--resume", "--out", str(run)])
    model = build_model(train_cli.resumed_config(args), make_training_env(config))
    assert (model.batch_size, model.learning_rate) == (8, 0.001)  # what the next piece uses
    assert model.micro_batch_size == 4  # kept by a resume without the flag
    assert model.clip_range_vf is None


@pytest.mark.slow
def test_checkpoint_without_resume_state_still_resumes(tmp_path):
    config = _config(checkpoint_minutes=0)
    run = tmp_path / "old"
    assert _run_piece(config, run, resume=False, kill_at=100) == 9
    latest_path = run / "checkpoints" / "latest.json"
    latest = read_json(latest_path)
    del latest["state"]  # what checkpoints written before exact resume look like
    write_json(latest_path, latest)
    assert _run_piece(config, run, resume=True, kill_at=0) == 0
    steps = [int(r["time/total_timesteps"]) for r in _progress(run)]
    assert steps == list(range(32, 321, 32))


def test_bf16_training_keeps_fp32_weights_and_optimizer(one_torch_thread):
    config = _config(precision="bf16", timesteps=32)
    model = build_model(config, make_training_env(config))
    trunk = model.policy.features_extractor
    assert trunk.precision == "bf16"
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(32)
    after = model.policy.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before), "no update happened"
    for state in model.policy.optimizer.state.values():
        assert state["exp_avg"].dtype == torch.float32
    obs = torch.zeros(2, 64, 64, 3)
    with torch.no_grad():
        assert trunk(obs).dtype == torch.float32
