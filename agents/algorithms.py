"""PPO and DQN exactly as in SB3, except that they keep HWC image observations as they are.

SB3 wraps every channel-last image env in ``VecTransposeImage`` (a copy and transpose per
step on the CPU); the policies in ``agents.policies`` read HWC uint8 directly and move the
layout change to the device. PPO also collects rollouts under ``torch.inference_mode``.
A model saved by these classes loads with plain ``stable_baselines3.PPO.load``/``DQN.load``.

PPO can also split each minibatch into micro-batches (``micro_batch_size``) and accumulate
their gradients before the one optimizer step of the minibatch: the same update up to
floating-point summation order, with the activations of one micro-batch alive at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import stable_baselines3 as sb3
import torch
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


def _wrap_env_keep_layout(env: Any, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:
    """SB3's ``_wrap_env`` without the image transpose."""
    if isinstance(env, VecEnv):
        return env
    single = Monitor(env) if monitor_wrapper else env
    return DummyVecEnv([lambda: single])


class PPO(sb3.PPO):
    """SB3 PPO for HWC policies; rollouts run under ``torch.inference_mode``.

    ``iteration_offset`` (set on resume: rollouts done before this piece) keeps
    ``time/iterations`` counting across pieces of one run.

    ``micro_batch_size`` (default None: SB3's ``train`` unchanged, bit for bit) splits every
    minibatch into chunks of that many samples (the last one may be smaller): each chunk's
    forward and backward runs alone, its loss weighted by its share of the minibatch, so the
    accumulated gradient is the minibatch's; then one gradient clipping and one optimizer
    step per minibatch, as before. Advantages are normalized with the whole minibatch's mean
    and std; the logged losses, clip fraction and approximate KL describe the whole minibatch.
    """

    _wrap_env = staticmethod(_wrap_env_keep_layout)
    iteration_offset = 0

    def __init__(self, *args: Any, micro_batch_size: int | None = None, **kwargs: Any) -> None:
        self.micro_batch_size = micro_batch_size  # checked with the run's settings (validation)
        super().__init__(*args, **kwargs)

    def dump_logs(self, iteration: int = 0) -> None:
        super().dump_logs(iteration + self.iteration_offset)

    def collect_rollouts(self, *args: Any, **kwargs: Any) -> bool:
        with torch.inference_mode():
            return super().collect_rollouts(*args, **kwargs)

    def train(self) -> None:
        if self.micro_batch_size is None:
            super().train()
            return
        self._train_micro_batches(self.micro_batch_size)

    def _train_micro_batches(self, micro: int) -> None:
        """SB3 2.9's ``PPO.train`` with each minibatch's loss and gradient accumulated over
        micro-batches of ``micro`` samples (see the class docstring)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        approx_kl_divs: list[float] = []
        loss_value = float("nan")
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                actions = data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = data.actions.long().flatten()
                advantages = data.advantages
                n = len(advantages)
                if self.normalize_advantage and n > 1:  # the whole minibatch's mean and std
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                self.policy.optimizer.zero_grad()
                pg = value = entropy_sum = loss_value = 0.0
                clipped = kl_sum = 0.0
                for start in range(0, n, micro):
                    part = slice(start, start + micro)
                    weight = (min(n, start + micro) - start) / n
                    obs = data.observations
                    obs = (
                        {k: v[part] for k, v in obs.items()} if isinstance(obs, dict) else obs[part]
                    )
                    values, log_prob, entropy = self.policy.evaluate_actions(obs, actions[part])
                    values = values.flatten()
                    adv = advantages[part]
                    log_ratio = log_prob - data.old_log_prob[part]
                    ratio = torch.exp(log_ratio)
                    policy_loss_1 = adv * ratio
                    policy_loss_2 = adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                    policy_loss = -torch.min(policy_loss_1, policy_loss_2).mean()
                    if clip_range_vf is None:
                        values_pred = values
                    else:
                        old_values = data.old_values[part]
                        values_pred = old_values + torch.clamp(
                            values - old_values, -clip_range_vf, clip_range_vf
                        )
                    value_loss = torch.nn.functional.mse_loss(data.returns[part], values_pred)
                    entropy_loss = -torch.mean(-log_prob if entropy is None else entropy)
                    loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                    (loss * weight).backward()  # frees this micro-batch's activations
                    pg += policy_loss.item() * weight
                    value += value_loss.item() * weight
                    entropy_sum += entropy_loss.item() * weight
                    loss_value += loss.item() * weight
                    with torch.no_grad():
                        clipped += (torch.abs(ratio - 1) > clip_range).sum().item()
                        kl_sum += ((torch.exp(log_ratio) - 1) - log_ratio).sum().item()
                pg_losses.append(pg)
                value_losses.append(value)
                entropy_losses.append(entropy_sum)
                clip_fractions.append(clipped / n)
                approx_kl_div = kl_sum / n
                approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False  # as SB3: this minibatch makes no step
                    self.policy.optimizer.zero_grad()
                    if self.verbose >= 1:
                        print(
                            f"Early stopping at step {epoch} due to reaching max kl: "
                            f"{approx_kl_div:.2f}"
                        )
                    break
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break
        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss_value)
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", torch.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)


class DQN(sb3.DQN):
    """SB3 DQN for HWC policies."""

    _wrap_env = staticmethod(_wrap_env_keep_layout)


ALGORITHMS: dict[str, type[sb3.PPO] | type[sb3.DQN]] = {"ppo": PPO, "dqn": DQN}
