""" "Agent with generator goggles": the agent plays the real environment but sees the
generator's reconstruction of each frame instead of the frame (Rupprecht et al., Section 4.5).

Procgen: each of a fixed list of level seeds is played once (``evaluate_procgen_levels``);
other envs: ``evaluate_episodes`` (Atari: whole games, unclipped rewards, no end on life loss,
the generator seeing the color twin of each grayscale stack, ``ColorFrameStack``). Every
goggles variant plays the same levels/seeds as the agent.
World Models agents carry their recurrent state across steps (``view.act``); it restarts for
each env whose episode ends (``reset``), their Procgen levels are all played at once, and the
generator sees V's 64x64 frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.evaluate import EpisodeResults, evaluate_episodes, evaluate_procgen_levels
from agents.policy_view import PolicyView
from agents.rollout import Observe
from interpret.synthesis.frames import ColorFrameStack, FrameSpace, env_images
from interpret.synthesis.generator import Generator

Lens = Callable[[torch.Tensor], torch.Tensor]
EVAL_LEVEL_START = 1_000_000  # Procgen goggles levels: seeds from here (unseen in training)


def generator_lens(generator: Generator) -> Lens:
    """Generator images -> their deterministic reconstruction (decoded encoder mean)."""
    generator.eval()
    return generator.reconstruct


class Goggles:
    """The agent seeing ``lens(frame)``; frames are generator-space uint8 (N, H, W, C).

    Has the ``act``/``device`` of a ``PolicyView``, so the evaluators in
    ``agents.evaluate`` play it unchanged. ``lens=None`` is the agent itself.
    """

    def __init__(self, view: PolicyView, space: FrameSpace, lens: Lens | None) -> None:
        self.view, self.space, self.lens = view, space, lens
        self.device = view.device

    @torch.no_grad()
    def act(
        self, frames: np.ndarray, deterministic: bool = False, generator: Any = None
    ) -> np.ndarray:
        if self.lens is None and not self.space.gray_stack:
            return self.view.act(frames, deterministic, generator)
        images = env_images(self.view, self.space, frames)
        if self.lens is not None:
            images = self.lens(images)
        return self.view.act(self.space.to_obs(images), deterministic, generator)

    def reset(self, rows: Any = None) -> None:
        self.view.reset(rows)


def goggles_returns(
    view: PolicyView,
    space: FrameSpace,
    env_id: str,
    lens: Lens | None,
    episodes: int,
    *,
    seed: int = 0,
    n_envs: int = 16,
    deterministic: bool = False,
    progress: bool = True,
    **env_options: Any,
) -> EpisodeResults:
    """Returns of ``episodes`` episodes of the agent seeing ``lens(frame)`` (None: the frame)."""
    import envs

    agent = Goggles(view, space, lens)
    family, _ = envs.parse_env_id(env_id)
    if family == "procgen":
        levels = list(range(EVAL_LEVEL_START + seed, EVAL_LEVEL_START + seed + episodes))
        slots = episodes if view.recurrent else n_envs
        return evaluate_procgen_levels(
            agent, env_id, levels, slots, deterministic, seed, progress, **env_options
        )
    # Atari: the generator (and so the agent through it) sees the color twin of each stack.
    seen = _color_twins(space) if family == "atari" and not view.recurrent else None
    return evaluate_episodes(
        agent, env_id, episodes, n_envs, deterministic, seed, progress, seen, **env_options
    )


def goggles_table(
    view: PolicyView,
    space: FrameSpace,
    env_id: str,
    options: dict[str, Any],
    generators: dict[str, Generator],
    episodes: int,
    *,
    seed: int,
    progress: bool,
    timings: dict[str, float],
) -> dict[str, dict[str, Any]] | None:
    """{"agent" and each variant: the returns' summary of the agent seeing the real frames or
    that generator's reconstructions}; None for ``episodes`` 0. Adds seconds to ``timings``."""
    if episodes == 0:
        return None
    rows = {}
    for name, lens in [("agent", None)] + [(v, generator_lens(g)) for v, g in generators.items()]:
        started = time.perf_counter()
        results = goggles_returns(
            view, space, env_id, lens, episodes, seed=seed, progress=progress, **options
        )
        rows[name] = results.summary()
        timings[f"goggles_{name}_s"] = time.perf_counter() - started
    return rows


def _color_twins(space: FrameSpace) -> Callable[[Any], Observe]:
    def seen(venv: Any) -> Observe:
        colors = ColorFrameStack(venv, space.frames)
        return lambda obs, dones: colors.reset() if dones is None else colors.step(dones)

    return seen
