"""PPO's micro-batches (``micro_batch_size``): unset, training is SB3's bit for bit; set, each
minibatch's gradient is the whole minibatch's (float tolerance), in fp32, bf16 and with a
separate value trunk, and a tiny training ends close to the full-batch one."""

from __future__ import annotations

import types

import numpy as np
import pytest
import stable_baselines3 as sb3
import torch

from agents.presets import PROCGEN_PPO
from agents.training import TrainConfig, build_model, make_training_env

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(precision: str = "fp32", **hp: object) -> TrainConfig:
    settings = {**PROCGEN_PPO, "n_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 2}
    return TrainConfig(
        algo="ppo",
        env_id="procgen:coinrun",
        arch="interpretable",
        timesteps=64,
        seed=3,
        env_kwargs={"distribution_mode": "easy"},
        hyperparams={**settings, **hp},
        precision=precision,
    )


def _trained(config: TrainConfig, steps: int = 64, sb3_train: bool = False) -> dict:
    model = build_model(config, make_training_env(config))
    if sb3_train:  # SB3's own update, not ours: the unmodified code path
        model.train = types.MethodType(sb3.PPO.train, model)  # type: ignore[method-assign]
    model.learn(steps)
    model.get_env().close()
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def test_unset_micro_batches_train_bit_identically_to_sb3():
    reference = _trained(_config(), sb3_train=True)
    for config in (_config(), _config(micro_batch_size=None)):
        got = _trained(config)
        assert all(torch.equal(reference[k], got[k]) for k in reference)
    changed = _trained(_config(micro_batch_size=4))  # the comparison can see a difference
    assert any(not torch.equal(reference[k], changed[k]) for k in reference)


def _gradients_and_logs(model, micro: int | None) -> tuple[list[list[torch.Tensor]], dict]:
    """The gradients each minibatch's optimizer step would apply (the step itself is skipped,
    so the weights stay put), and the logged values, for one update over the filled buffer."""
    grads: list[list[torch.Tensor]] = []
    params = list(model.policy.parameters())
    model.policy.optimizer.step = lambda *a, **k: grads.append([p.grad.clone() for p in params])
    model.micro_batch_size = micro
    np.random.seed(0)  # the same minibatches
    model.train()
    logs = {k: v for k, v in model.logger.name_to_value.items() if k.startswith("train/")}
    return grads, logs


@pytest.mark.parametrize(
    ("precision", "separate", "micro", "rtol"),
    [
        ("fp32", False, 4, 1e-5),
        ("fp32", False, 6, 1e-5),  # chunks of 6, 6 and 4: weighted by their size
        ("fp32", True, 4, 1e-5),  # separate value trunk
        ("bf16", False, 4, 2e-2),  # bf16 convolutions round differently per batch size
    ],
)
def test_micro_batch_gradient_equals_the_minibatch_gradient(precision, separate, micro, rtol):
    config = _config(precision, separate_value_trunk=separate, n_epochs=1, max_grad_norm=1e9)
    model = build_model(config, make_training_env(config))
    model.learn(32)  # fills the rollout buffer (and makes one update: a non-trivial policy)
    full, full_logs = _gradients_and_logs(model, None)
    parts, part_logs = _gradients_and_logs(model, micro)
    model.get_env().close()
    assert len(full) == len(parts) == 2  # 32 samples, minibatches of 16
    for a, b in zip(full, parts, strict=True):
        flat_a, flat_b = torch.cat([g.flatten() for g in a]), torch.cat([g.flatten() for g in b])
        assert flat_a.norm() > 0
        assert (flat_a - flat_b).norm() <= rtol * flat_a.norm()
        if precision == "fp32":
            for ga, gb in zip(a, b, strict=True):
                torch.testing.assert_close(gb, ga, rtol=rtol, atol=1e-5 * flat_a.abs().max())
    assert full_logs.keys() == part_logs.keys()
    del full_logs["train/n_updates"], part_logs["train/n_updates"]  # counts on across updates
    for key, value in full_logs.items():  # losses, clip fraction, approx KL: whole minibatches
        assert part_logs[key] == pytest.approx(value, rel=rtol, abs=1e-6), key


def test_a_tiny_training_with_micro_batches_ends_close_to_the_full_batch_one():
    full = _trained(_config(), steps=96)
    parts = _trained(_config(micro_batch_size=4), steps=96)
    start = build_model(_config(), make_training_env(_config()))
    start.get_env().close()
    for name, value in full.items():
        moved = (value - start.policy.state_dict()[name]).abs().max().item()
        gap = (parts[name] - value).abs().max().item()  # measured: < 5e-5 of the move
        assert gap <= 1e-3 * max(moved, 1e-3), (name, moved, gap)
