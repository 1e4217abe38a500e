"""agents.executor: the same map through the serial, process-pool and Ray backends."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.executor import ExecutorError, LocalExecutor, SerialExecutor, make_executor
from world_model.cmaes import evaluate_candidates


def square_and_pid(x):
    return x * x, os.getpid()


def toy_fitness(task):
    params, seed = task
    return -float(np.sum((params - 1.0) ** 2)) + seed * 0.0


def test_serial_and_local_agree_and_keep_order():
    items = list(range(12))
    with SerialExecutor() as serial:
        expected = serial.map(square_and_pid, items)
    with LocalExecutor(2) as local:
        got = local.map(square_and_pid, items)
        again = local.map(square_and_pid, items)  # the pool is kept between calls
    assert [v for v, _ in got] == [v for v, _ in expected] == [i * i for i in items]
    assert {p for _, p in got} - {os.getpid()}  # ran in other processes
    assert len({p for _, p in got} | {p for _, p in again}) <= 2


@pytest.mark.parametrize(
    ("backend", "workers", "message"),
    [("threads", 2, "unknown executor"), ("local", 0, "positive"), ("local", True, "positive")],
)
def test_bad_backend_or_workers_is_one_clear_error(backend, workers, message):
    with pytest.raises(ExecutorError, match=message):
        make_executor(backend, workers)


def test_missing_ray_is_one_line():
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from agents.executor import make_executor\n"
        "try:\n    make_executor('ray', 2)\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("ExecutorError the ray backend needs ray: pip install")


@pytest.mark.slow
def test_ray_backend_on_a_local_instance():
    pytest.importorskip("ray", reason="the ray backend needs the distributed extra")
    tests_dir = str(Path(__file__).resolve().parent)  # workers import this module by name
    executor = make_executor("ray", 2, runtime_env={"env_vars": {"PYTHONPATH": tests_dir}})
    try:
        results = executor.map(square_and_pid, list(range(6)))
        assert [v for v, _ in results] == [i * i for i in range(6)]
        assert {p for _, p in results} - {os.getpid()}
        fitness = evaluate_candidates(
            executor, [np.ones(3), np.zeros(3)], [0, 1], lambda c, s: (c, s), toy_fitness
        )
        assert fitness.tolist() == [0.0, -3.0]
    finally:
        executor.close()
