"""Which NMF feature sees CoinRun's hazards: hazard pixel masks from the game's own renderer,
and each feature's negative attribution inside them.

Hilton et al. (2020, "Model editing") blind the agent to the feature the interface shows on
buzzsaws. To choose that feature by measurement: the frame the game draws for a recorded state
as it is, and for the same state with its hazards removed (`envs.coinrun_state`: buzzsaws,
enemies, lava), differ exactly on the hazards' pixels, so no camera geometry is re-implemented
here. Each feature's negative ("bad news") attribution map (`NMFFeatures.maps`, layer
resolution) is weighed by those masks (averaged down to the layer's resolution) and summed over
a sample of states with a hazard in view. The most negative score marks the hazard feature.
For a policy target, where either sign is evidence about an action, the absolute attribution
counts instead (`counts_bad_news`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from envs.coinrun_state import ENEMY, SAW, without_hazards
from interpret.attribution.nmf import NMFFeatures
from interpret.attribution.object_masks import COINRUN, rendered_differences
from interpret.core.errors import InterpretError

HAZARD_KINDS = ("buzzsaw", "enemy", "lava")


def hazard_remover(kinds: Iterable[str] = HAZARD_KINDS) -> Callable[[bytes], bytes]:
    """``state -> state`` without the hazards of `kinds` (names from `HAZARD_KINDS`)."""
    kinds = tuple(kinds)
    unknown = sorted(set(kinds) - set(HAZARD_KINDS))
    if unknown or not kinds:
        raise InterpretError(f"hazard kinds must be among {', '.join(HAZARD_KINDS)}; got {kinds}")
    types = tuple(t for kind, t in (("buzzsaw", SAW), ("enemy", ENEMY)) if kind in kinds)
    return functools.partial(without_hazards, types=types, lava="lava" in kinds)


def hazard_masks(
    states: Sequence[bytes], kinds: Iterable[str] = HAZARD_KINDS, batch_size: int = 32
) -> np.ndarray:
    """(N, 64, 64) bool: the pixels where the hazards of `kinds` are drawn in each CoinRun state
    (`rendered_differences`: they hold for whatever render options recorded the state)."""
    return rendered_differences(states, [hazard_remover(kinds)], batch_size)[:, 0]


def area_fractions(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) float32: the share of each layer cell's pixels that `masks` (N, h, w) covers
    (area averaging, exact block means when h, w are multiples of H, W)."""
    tensor = torch.as_tensor(np.asarray(masks), dtype=torch.float32)[:, None]
    return F.adaptive_avg_pool2d(tensor, shape)[:, 0].numpy()


def counts_bad_news(target: str) -> bool:
    """Whether a target's negative attribution is bad news (a value or Q-value falling), so
    the hazard feature is the most negative on hazards; for a policy target (``policy``,
    ``logit:K``, ``actions:K,L``) either sign is evidence about an action, so both count."""
    return target.partition(":")[0] in ("value", "max-q", "q")


def hazard_scores(
    features: NMFFeatures, attributions: np.ndarray, masks: np.ndarray, bad_news: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, shares), each (k,) float64. ``scores``: minus each feature's negative
    attribution (``bad_news=False``: its absolute attribution, negative plus positive) inside
    the hazard masks, per observation (attribution units, e.g. value):
    ``-mean_n sum_yx negative[n, k] * area[n]``; ``shares``: the part of each feature's
    negative (absolute) attribution that lies inside them, in [0, 1].

    :param attributions: (N, C, H, W) attributions at ``features.layer``
    :param masks: (N, h, w) bool hazard pixels of the same N observations (any resolution)
    """
    if len(attributions) != len(masks) or len(masks) == 0:
        raise InterpretError(f"{len(attributions)} attributions for {len(masks)} hazard masks")
    maps = features.maps(attributions)
    counted = maps.negative if bad_news else maps.negative + maps.positive
    counted = counted.astype(np.float64)  # (N, k, H, W), >= 0
    area = area_fractions(masks, (counted.shape[2], counted.shape[3])).astype(np.float64)
    inside = np.einsum("nkyx,nyx->k", counted, area)
    return -inside / len(masks), inside / np.maximum(counted.sum(axis=(0, 2, 3)), 1e-30)


@dataclass
class HazardAttribution:
    """`measure_hazard_attribution`'s result.

    Attributes:
        scores: (k,) `hazard_scores`; the most negative is the hazard feature.
        shares: (k,) the part of each feature's negative attribution (absolute, for a policy
            target) over these frames that lies on hazard pixels, in [0, 1] (how specific to
            hazards its bad news is).
        observations: (N, 64, 64, 3) uint8, the sampled frames with a hazard in view.
        masks: (N, 64, 64) bool, their hazard pixels.
        steps_recorded: steps played to find them.
    """

    scores: np.ndarray
    shares: np.ndarray
    observations: np.ndarray
    masks: np.ndarray
    steps_recorded: int

    @property
    def feature(self) -> int:
        """Index of the feature with the strongest (negative) attribution on hazards."""
        return int(np.argmin(self.scores))


def sample_hazard_frames(
    view: Any,
    env_id: str,
    env_options: dict[str, Any] | None,
    n_observations: int,
    seed: int,
    kinds: Iterable[str] = HAZARD_KINDS,
    *,
    n_envs: int = 8,
    steps_per_round: int = 64,
    every: int = 2,
    max_rounds: int = 16,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Play `view` (rounds of `n_envs` x `steps_per_round` steps, every `every`-th step kept)
    until `n_observations` frames show a hazard of `kinds`, or `max_rounds` rounds are played.

    :return: observations (N, 64, 64, 3) uint8, masks (N, 64, 64) bool, steps played
    """
    from interpret.core.trajectory import record_trajectories

    kinds = tuple(kinds)
    observations: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    found = played = 0
    for round_index in range(max_rounds):
        trajectories = record_trajectories(
            view, env_id, n_envs=n_envs, n_steps=steps_per_round, seed=seed + 7919 * round_index,
            record_states=True, **(env_options or {}),
        )  # fmt: skip
        played += n_envs * steps_per_round
        states = [s for t in trajectories for s in (t.states or [])[::every]]
        frames = np.concatenate([t.observations[::every] for t in trajectories])
        drawn = hazard_masks(states, kinds)
        visible = drawn.any(axis=(1, 2))
        observations.append(frames[visible])
        masks.append(drawn[visible])
        found += int(visible.sum())
        if found >= n_observations:
            break
    if found == 0:
        raise InterpretError(f"no {'/'.join(kinds)} came into view in {played} steps played")
    if found < n_observations:
        warnings.warn(
            f"only {found} of {n_observations} frames with hazards in {played} steps",
            stacklevel=2,
        )
    return (
        np.concatenate(observations)[:n_observations],
        np.concatenate(masks)[:n_observations],
        played,
    )


def measure_hazard_attribution(
    view: Any,
    features: NMFFeatures,
    env_id: str = COINRUN,
    env_options: dict[str, Any] | None = None,
    n_observations: int = 128,
    seed: int = 0,
    *,
    kinds: Iterable[str] = HAZARD_KINDS,
    target: str = "value",
    n_steps: int = 10,
    batch_size: int = 32,
    n_envs: int = 8,
    steps_per_round: int = 64,
) -> HazardAttribution:
    """Each NMF feature's negative attribution on CoinRun hazards, with the frames and masks
    it was measured on; ``.scores`` (k,): argmin = the hazard feature.

    Plays `view` on `env_id` (CoinRun, with `env_options` such as ``distribution_mode``) from
    `seed` until `n_observations` frames show a hazard of `kinds`, attributes `target` to
    ``features.layer`` with integrated gradients (`n_steps`, zero baseline: the attribute
    report's settings); ``scores`` are `hazard_scores`: minus the mean per frame of each
    feature's negative attribution (absolute, for a policy target: `counts_bad_news`) inside
    the hazard pixels, in the target's units (<= 0).
    Frames are played in rounds of `n_envs` envs x `steps_per_round` steps (every 2nd kept).
    """
    import envs
    from interpret.attribution.integrated_gradients import HiddenLayerIntegratedGradients

    family, game = envs.parse_env_id(env_id)
    if (family, game) != ("procgen", "coinrun"):
        raise InterpretError(f"hazard features need CoinRun ({COINRUN}), not {env_id}")
    ig = HiddenLayerIntegratedGradients(view, features.layer, target=target, n_steps=n_steps)
    observations, masks, played = sample_hazard_frames(
        view, env_id, env_options, n_observations, seed, kinds,
        n_envs=n_envs, steps_per_round=steps_per_round,
    )  # fmt: skip
    attribution = ig.attribute(observations, batch_size=batch_size)
    bad_news = counts_bad_news(ig.target_name)
    scores, shares = hazard_scores(features, attribution.attributions, masks, bad_news)
    return HazardAttribution(scores, shares, observations, masks, played)
