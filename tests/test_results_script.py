"""scripts/results.py: the editing table and the paper's success test, on known counts."""

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from agents.evaluate import wilson_interval
from interpret.audit.causes import TABLE_COLUMNS

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "results.py"


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("results_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def summary(n, failures):
    """An audit summary.json of n levels with `failures` (one count per paper column)."""

    def rate(k):
        return {"count": k, "rate": k / n, "ci95": list(wilson_interval(k, n))}

    completed = n - sum(failures)
    table = {c: rate(k) for c, k in zip(TABLE_COLUMNS, failures, strict=True)}
    table["all failures"] = rate(sum(failures))
    completion = {"levels": n, "completed": completed, "rate": completed / n}
    completion["ci95"] = list(wilson_interval(completed, n))
    return {"levels": n, "first_level": 0, "completion": completion, "failure_table": table}


def test_a_buzzsaw_edit_that_only_moves_buzzsaws_passes(results):
    rows = {
        "original": summary(2000, [8, 3, 2, 2]),
        "buzzsaw-blind": summary(2000, [60, 3, 2, 1]),
        "invisible buzzsaws": summary(2000, [600, 1, 1, 1]),
    }
    lines, verdict = results.editing_table(rows)
    assert len(lines) == 3 and lines[0].startswith("| original | 99.25")
    assert verdict["success"] and verdict["buzzsaw_p"] < 1e-6
    assert "the paper's test is met" in results.editing_conclusion(verdict)
    causes = results.cause_lines(
        {
            "a": {"cause_breakdown": {"lava": {"count": 2}}},
            "b": {"cause_breakdown": {"buzzsaw": {"count": 5}, "involving lava": {"count": 1}}},
        }
    )
    assert causes == ["| row | buzzsaw | lava |", "|---|---|---|", "| a | 0 | 2 |", "| b | 5 | 0 |"]
    assert "p=" in lines[1] and "12.76" in lines[1]  # ours with its p, then the paper's row


def test_an_edit_that_moves_another_column_fails(results):
    rows = {"original": summary(2000, [8, 3, 2, 2]), "buzzsaw-blind": summary(2000, [60, 40, 2, 2])}
    _, verdict = results.editing_table(rows)
    assert not verdict["success"]
    assert verdict["others"][TABLE_COLUMNS[1]]["inside"] is False
    said = results.editing_conclusion(verdict)
    assert said.startswith("The buzzsaw edit raised buzzsaw failures by +2.60 points")
    assert f"moved {TABLE_COLUMNS[1]} (+1.85 points" in said and "not met" in said
    assert "significance" not in said  # that column's p is far below 0.01
    rows["buzzsaw-blind"] = summary(2000, [60, 9, 2, 2])  # just outside, p = 0.083
    said = results.editing_conclusion(results.editing_table(rows)[1])
    assert "not met" in said and "no other column differs" in said and "p=0.083" in said
    rows["buzzsaw-blind"] = summary(2000, [12, 3, 2, 2])  # more buzzsaw failures, p > 0.01
    _, verdict = results.editing_table(rows)
    assert not verdict["success"] and verdict["buzzsaw_p"] > 0.01
    assert "short of an increase at p < 0.01" in results.editing_conclusion(verdict)


def test_bad_arguments_exit_2_before_any_work(results, capsys):
    with pytest.raises(SystemExit) as stop:
        results.main(["editing", "--levels", "0"])
    assert stop.value.code == 2 and "--levels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        results.main(["editing", "--model", "zoo:no-such-agent"])
    assert stop.value.code == 2 and "no zoo/no-such-agent" in capsys.readouterr().err


def test_steps_done_with_the_same_command_are_skipped(results, tmp_path):
    out, calls = tmp_path / "out.txt", tmp_path / "calls.txt"

    def step(text):
        code = f"open({str(calls)!r}, 'a').write('x'); open({str(out)!r}, 'w').write({text!r})"
        return results.Step("write", [sys.executable, "-c", code], out)

    def run(text, force=False):
        runner = results.Runner(tmp_path, force)
        with results.tqdm(total=1, disable=True) as bar:
            runner.run([step(text)], bar)
        return runner

    first = run("a").seconds["write"]
    again = run("a")  # done with this command: skipped, its wall time kept
    assert calls.read_text() == "x" and out.read_text() == "a"
    assert first > 0 and again.seconds == {"write": first}
    run("b")  # another command for the same output: run again
    assert calls.read_text() == "xx" and out.read_text() == "b"
    runner = run("b", force=True)
    assert calls.read_text() == "xxx" and runner.commands == [
        shlex.join(["python", "-c", step("b").argv[2]])
    ]
    failing = results.Step("fail", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "no")
    with pytest.raises(SystemExit, match="fail failed"):
        results.Runner(tmp_path, False).run([failing], results.tqdm(disable=True))


def test_goggles_rows_follow_the_papers_order_with_its_scores(results):
    def row(mean):
        return {"mean_return": mean, "return_stderr": 0.5, "episodes": 16}

    lines = results.goggles_lines({"full": row(3.0), "agent": row(16.25), "vae": row(-20.0)})
    assert [line.split(" | ")[0] for line in lines] == [
        "| the real frames",
        "| a plain VAE's reconstructions",
        "| the full generator's (saliency-weighted, agent-perception loss)",
    ]
    assert lines[0].endswith("| +16.25 ± 0.50 | 16 | +14 |") and lines[1].endswith("| -8 |")
    history = {"vae": [{"reconstruction": 9.0, "perception": 2.0, "kl": 1.0}], "full": []}
    assert results.loss_lines(history) == ["| plain VAE | 9 | 2 | 1 |"]


def test_occlusion_rows_show_each_class_with_its_interval(results):
    def row(name, frames, kl=0.0, ci=(0.0, 0.0), changed=0.0, value=0.0):
        return {"name": name, "frames": frames, "kl": kl, "kl_ci": list(ci),
                "greedy_changed": changed, "value_change": value}  # fmt: skip

    summary = {
        "rows": [
            row("buzzsaw", 189, 0.0025, (0.0019, 0.0031), 0.039, 2.26),
            row("lava", 0, float("nan"), (float("nan"), float("nan")), float("nan"), float("nan")),
        ]
    }
    assert results.occlusion_lines(summary) == [
        "| buzzsaw | 189 | 0.0025 [0.0019, 0.0031] | 3.9% | +2.26 |",
        "| lava | 0 | - | - | - |",
    ]
    args = results.build_parser().parse_args(["editing", "--seed", "3", "--work", "w"])
    step = results.occlusion_step(args)
    assert step.argv[3:5] == ["occlude", "zoo:coinrun-ppo"] and "3" in step.argv
    assert step.output == Path("w/occlusion/summary.json")
