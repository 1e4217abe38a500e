"""The audit and compare commands: real CoinRun levels played by tiny real policies.

Checked against independent answers: the evaluation loop of ``agents.evaluate`` (greedy
outcomes level by level), the real game stepped from each recorded fatal state, the cause
labels' own invariants, and the same outcomes however the levels are split among workers.
"""

import json

import numpy as np
import pytest
import torch
from tiny_models import COINRUN, coinrun_runner

import agents
import envs
from agents.evaluate import evaluate_procgen_levels
from agents.executor import LocalExecutor
from interpret.audit.causes import TABLE_COLUMNS
from interpret.audit.comparison import comparison_rows, two_proportion_p
from interpret.audit.engine import (
    LEVEL_EDITS,
    ReplayDivergedError,
    _Policy,
    _Replayer,
    chunk_levels,
    run_audit,
)
from interpret.cli import main
from interpret.core.trajectory import Trajectory

HARD = {"distribution_mode": "hard"}
LEVELS = list(range(500, 508))  # the runner completes 5, fails 3 (hard mode)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    _, path = coinrun_runner("ours-ppo-nature", tmp_path_factory.mktemp("model"))
    return str(path)


@pytest.fixture(scope="module")
def audit(model):
    return run_audit(model, COINRUN, LEVELS, env_options=HARD, n_envs=3, keep_failures=10)


@pytest.fixture(scope="module")
def stepwise(model):
    """The same audit with the engine that reads every state live and keeps every frame."""
    return run_audit(
        model, COINRUN, LEVELS, env_options=HARD, n_envs=3, keep_failures=10, engine="stepwise"
    )


def outcomes(result):
    return (
        result.completed.tolist(),
        result.lengths.tolist(),
        [c.label if c else None for c in result.causes],
    )


def test_chunks_cover_the_levels_in_order():
    parts = chunk_levels([7, 8, 9, 10, 11], 3)
    assert [len(p) for p in parts] == [2, 1, 2]
    assert [pair for part in parts for pair in part] == list(enumerate([7, 8, 9, 10, 11]))
    assert len(chunk_levels([1, 2], 5)) == 2  # never an empty chunk


def test_outcomes_do_not_depend_on_the_split(model, audit):
    split = run_audit(model, COINRUN, LEVELS, env_options=HARD, n_envs=2, chunks=3)
    assert outcomes(split) == outcomes(audit)
    np.testing.assert_array_equal(split.level_seeds, LEVELS)


def test_replay_engine_gives_what_the_stepwise_engine_reads_live(audit, stepwise):
    """Same outcome, cause and fatal state bytes on every level; the kept failures and the
    extreme steps have the same steps and the same (replayed vs live) frames."""
    assert outcomes(audit) == outcomes(stepwise)
    assert audit.fatal_states == stepwise.fatal_states
    assert sum(state is not None for state in audit.fatal_states) == (~audit.completed).sum() > 0
    assert [i for i, _ in audit.failures] == [i for i, _ in stepwise.failures]
    for (_, a), (_, b) in zip(audit.failures, stepwise.failures, strict=True):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-6)
        assert a.metadata == b.metadata
    for ours, live in ((audit.most_negative, stepwise.most_negative),
                       (audit.most_positive, stepwise.most_positive)):  # fmt: skip
        assert [(e.level_index, e.step) for e in ours] == [(e.level_index, e.step) for e in live]
        for a, b in zip(ours, live, strict=True):
            np.testing.assert_array_equal(a.observation, b.observation)
    # The stepwise engine also ran the network on envs whose levels had ended.
    assert audit.timings["network_rows"] == audit.timings["steps"]
    assert stepwise.timings["network_rows"] > stepwise.timings["steps"]


def test_replay_engine_grows_its_buffers(model, stepwise, monkeypatch):
    """Episodes longer than the per-env buffers (here 8 steps) double them, random streams
    included: the outcomes stay those of the stepwise engine."""
    import interpret.audit.engine as audit_module

    monkeypatch.setattr(audit_module, "_EPISODE_CAPACITY", 8)
    result = run_audit(model, COINRUN, LEVELS[:3], env_options=HARD, n_envs=2, keep_failures=0)
    assert result.lengths.max() > 16  # grown at least twice
    assert outcomes(result) == tuple(column[:3] for column in outcomes(stepwise))
    assert result.fatal_states == stepwise.fatal_states[:3]


@pytest.mark.parametrize("edit", [None, "invisible-buzzsaws"])
def test_replayed_state_equals_the_state_read_live(edit):
    """Play a level with random actions reading every state; a fresh game fed the same
    actions passes through the same state bytes and frames (also after another level)."""
    change = LEVEL_EDITS[edit] if edit is not None else None
    rng = np.random.default_rng(1)

    def live(level):
        venv = envs.make_vec_env(COINRUN, 1, 0, levels=[level], **HARD)
        obs = venv.reset()
        if change is not None:
            venv.set_states([change(venv.get_states([0])[0])])
            obs = venv.observations()
        states, frames, actions = [], [], []
        done, info = False, {}
        while not done:
            states.append(venv.get_states([0])[0])
            frames.append(obs[0].copy())
            actions.append(int(rng.choice([1, 5, 7, 8, 8])))
            obs, _, dones, infos = venv.step(np.array(actions[-1:]))
            done, info = bool(dones[0]), infos[0]
        venv.close()
        return states, frames, np.array(actions), not info["level_complete"]

    replayer = _Replayer(COINRUN, 0, HARD, change)
    try:
        for level in (503, 505, 503):  # the replay env is made for one, then moved
            states, frames, actions, failed = live(level)
            last = len(actions) - 1
            for until in sorted({0, last // 2, last}):
                state, kept = replayer.play(level, actions, until, range(until + 1))
                assert state == states[until]
                assert sorted(kept) == list(range(until + 1))
                for t, frame in kept.items():
                    np.testing.assert_array_equal(frame, frames[t])
            if failed:
                replayer.play(level, actions, last, check_failure=True)
            else:
                with pytest.raises(ReplayDivergedError):
                    replayer.play(level, actions, last, check_failure=True)
    finally:
        replayer.close()


class _FixedLogits:
    """A view whose logits are given rows (the observations are their indices); the members
    of ``PolicyView`` that the audit's sampler uses."""

    recurrent = False
    score_kind = "logits"

    def __init__(self, logits):
        self.logits = torch.as_tensor(logits, dtype=torch.float32)

    def preprocess(self, obs):
        return torch.as_tensor(obs)

    def outputs(self, x, state=None):
        return {"logits": self.logits[x], "value": self.logits[x, 0]}

    def action_scores(self, out):
        return out["logits"]

    def state_value(self, out):
        return out["value"]

    def reset(self, rows=None):
        pass


def test_vectorized_sampling_draws_by_the_inverse_cdf():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (500, 15))
    logits[:50] = 0.0  # ties: equal probabilities
    logits[50:60, 3] = 40.0  # one action certain
    policy = _Policy(_FixedLogits(logits), deterministic=False)
    rows = np.arange(500)
    uniforms = np.array([np.random.default_rng([7, int(i)]).random() for i in rows])
    vectorized, values = policy.sample(rows, uniforms)
    # Independently, row by row: the first action whose cumulative probability exceeds u.
    logits = logits.astype(np.float32).astype(np.float64)  # what the view gives
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs, axis=1)
    looped = [min(int(np.searchsorted(c, u * c[-1], side="right")), 14)
              for c, u in zip(cdf, uniforms, strict=True)]  # fmt: skip
    np.testing.assert_array_equal(vectorized, looped)
    np.testing.assert_array_equal(values, logits[:, 0].astype(np.float32))
    assert (vectorized[50:60] == 3).all() and len(set(vectorized[:50])) > 5


def test_bf16_audit_and_bad_options(model):
    result = run_audit(model, COINRUN, LEVELS[:1], env_options=HARD, precision="bf16")
    assert (result.lengths > 0).all()
    assert all((c is None) == done for c, done in zip(result.causes, result.completed, strict=True))
    with pytest.raises(ValueError, match="engine"):
        run_audit(model, COINRUN, LEVELS[:1], env_options=HARD, engine="nope")
    with pytest.raises(ValueError, match="precision"):
        run_audit(model, COINRUN, LEVELS[:1], env_options=HARD, precision="fp16")
    with pytest.raises(ValueError, match="unknown level edit 'no-coins'; valid: invisible-"):
        run_audit(model, COINRUN, LEVELS[:1], env_options=HARD, level_edit="no-coins")


def test_every_failure_is_labelled_and_counted_once(audit):
    failed = [c for c in audit.causes if c is not None]
    assert len(failed) == int((~audit.completed).sum()) > 0
    assert all(c.causes for c in failed)  # each fatal step has a cause
    table = audit.failure_table()
    assert sum(table[c]["count"] for c in TABLE_COLUMNS) == len(failed)
    assert table["all failures"]["count"] == len(failed)
    completion = audit.completion()
    assert completion["completed"] + len(failed) == len(LEVELS)
    lo, hi = completion["ci95"]
    assert lo <= completion["rate"] <= hi


def test_fatal_states_really_end_the_episode(audit):
    """Replaying the recorded pre-step state and the last action in a fresh game fails."""
    env = envs.make_env(COINRUN, seed=0, **HARD)
    env.reset()
    try:
        assert audit.failures
        for index, trajectory in audit.failures:
            env.set_state(audit.fatal_states[index])
            _, _, done, _, info = env.step(int(trajectory.actions[-1]))
            assert done and not info["level_complete"]
            assert trajectory.level_seeds[0] == audit.level_seeds[index]
            assert len(trajectory) == min(128, audit.lengths[index])
            assert trajectory.dones[-1] and not trajectory.dones[:-1].any()
    finally:
        env.close()


def test_greedy_audit_matches_the_evaluation_loop(model):
    result = run_audit(model, COINRUN, LEVELS[:4], env_options=HARD, deterministic=True)
    reference = evaluate_procgen_levels(
        agents.load(model), COINRUN, LEVELS[:4], 4, deterministic=True, progress=False, **HARD
    )
    np.testing.assert_array_equal(result.completed, reference.completed)
    np.testing.assert_array_equal(result.lengths, reference.lengths)
    np.testing.assert_allclose(result.returns, reference.returns)


def test_extreme_advantages_are_sorted_and_from_finished_episodes(audit):
    negative = [e.advantage for e in audit.most_negative]
    positive = [e.advantage for e in audit.most_positive]
    assert negative == sorted(negative) and positive == sorted(positive, reverse=True)
    assert negative[0] <= positive[-1]
    for steps in (audit.most_negative, audit.most_positive):  # at most one per episode
        assert len({e.level_index for e in steps}) == len(steps)
    for e in audit.most_negative + audit.most_positive:
        assert e.observation.shape == (64, 64, 3) and 0 <= e.step < e.episode_length


def test_two_proportion_test_known_value():
    # 10/100 vs 20/100: pooled 0.15, z = 0.1 / sqrt(0.15 * 0.85 * 0.02) = 1.980, p = 0.0477
    assert two_proportion_p(10, 100, 20, 100) == pytest.approx(0.0477, abs=2e-4)
    assert two_proportion_p(5, 50, 5, 50) == 1.0
    assert two_proportion_p(0, 10, 0, 10) == 1.0


@pytest.mark.slow
def test_comparison_reads_an_audit_and_its_summary_alike(audit):
    from interpret.audit.report import summary_dict

    summary = json.loads(json.dumps(summary_dict(audit, attribution=False)))
    live, saved = comparison_rows(audit, audit), comparison_rows(summary, audit)
    assert [r["row"] for r in live] == ["completed", *TABLE_COLUMNS, "all failures"]
    assert [(r["a"]["count"], r["b"]["count"]) for r in saved] == [
        (r["a"]["count"], r["b"]["count"]) for r in live
    ]
    failed = audit.n - int(audit.completed.sum())
    assert live[-1]["a"]["count"] == failed and all(r["p_value"] == 1.0 for r in saved)


def test_counterfactual_levels_without_hazards_only_time_out(model):
    """Every level is edited, also one started in a slot after another level ended (502,
    third on two envs, which the runner fails unedited)."""
    assert not run_audit(model, COINRUN, LEVELS[2:3], env_options=HARD, n_envs=1).completed[0]
    result = run_audit(
        model, COINRUN, LEVELS[:3], env_options=HARD, level_edit="no-hazards", n_envs=2
    )
    assert result.completed[2]
    for cause in result.causes:
        assert cause is None or cause.causes == ("timeout",)


@pytest.mark.slow
def test_two_worker_processes_give_the_same_outcomes(model, audit):
    with LocalExecutor(2) as executor:
        parallel = run_audit(
            model, COINRUN, LEVELS, env_options=HARD, n_envs=3, executor=executor,
            keep_failures=2,
        )  # fmt: skip
    assert outcomes(parallel) == outcomes(audit)
    failed = [i for i, c in enumerate(audit.causes) if c is not None]
    assert [i for i, _ in parallel.failures] == failed[:2]  # the first by level order
    for (_, a), (_, b) in zip(parallel.failures, audit.failures, strict=False):
        np.testing.assert_array_equal(a.observations, b.observations)


@pytest.mark.slow
def test_audit_command_writes_the_report(tmp_path, capsys):
    _, path = coinrun_runner("ours-ppo-interpretable", tmp_path)
    out = tmp_path / "audit"
    args = ["audit", str(path), "--env", COINRUN, "--env-kwargs", "distribution_mode=hard"]
    args += ["--levels", "4", "--start-level", "500", "--executor", "serial", "--n-envs", "4"]
    assert (
        main([*args, "--show", "2", "--context", "24", "--nmf-features", "3", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "failed: buzzsaw" in printed and "completed" in printed
    summary = json.loads((out / "summary.json").read_text())
    n_failed = len(summary["failures"])
    assert summary["completion"]["completed"] + n_failed == 4
    assert n_failed > 0 and len(summary["failures_shown"]) == min(2, n_failed)
    page = (out / "index.html").read_text()
    for shown in summary["failures_shown"]:
        trajectory = Trajectory.load(out / shown["file"])
        assert len(trajectory) == shown["steps_kept"] == shown["fatal_step"] + 1
        link = shown["attribution_link"]
        assert (
            link
            == f"attribution/index.html#trajectory={shown['trajectory']}&step={shown['fatal_step']}"
        )
        assert link.replace("&", "&amp;") in page or link in page
    attribution = json.loads((out / "attribution" / "summary.json").read_text())
    assert attribution["layer"] == "2b" and len(attribution["trajectories"]) == len(
        summary["failures_shown"]
    )
    with np.load(out / "arrays.npz") as arrays:
        assert arrays["level_seeds"].tolist() == [500, 501, 502, 503]
        assert (arrays["category"] >= 0).sum() == n_failed


@pytest.mark.slow
def test_compare_a_model_with_itself(model, tmp_path, capsys):
    args = ["compare", model, model, "--env", COINRUN, "--env-kwargs", "distribution_mode=hard"]
    args += ["--levels", "3", "--start-level", "500", "--executor", "serial"]
    assert main([*args, "--out", str(tmp_path / "cmp")]) == 0
    assert "B - A" in capsys.readouterr().out
    rows = json.loads((tmp_path / "cmp" / "summary.json").read_text())["rows"]
    assert [r["row"] for r in rows] == ["completed", *TABLE_COLUMNS, "all failures"]
    for r in rows:
        assert r["a"] == r["b"] and r["difference"] == 0 and r["p_value"] == 1.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "procgen:bigfish"], "procgen:coinrun only"),
        (["--levels", "0"], "--levels must be positive"),
        (["--env-kwargs", "distribution_mode=wrong"], "distribution_mode"),
        (["--features", "/nonexistent"], "not an attribution report"),
    ],
)
def test_bad_input_is_one_line(model, tmp_path, capsys, extra, message):
    args = ["audit", model, "--env", COINRUN, *extra, "--out", str(tmp_path / "x")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x").exists()
