""" "Agent with generator goggles": the agent plays the real environment but sees the
generator's reconstruction of each frame instead of the frame (Rupprecht et al., Section 4.5).

Procgen: each of a fixed list of level seeds is played once (``evaluate_procgen_levels``);
Atari: whole games (unclipped rewards, no end on life loss) on fixed seeds, the generator
seeing the color twin of each grayscale stack (``ColorFrameStack``); other image envs:
``evaluate_episodes``. Every goggles variant plays the same levels/seeds as the agent.
World Models agents carry their recurrent state across steps (``view.act``); it restarts for
each env whose episode ends (``_recurrent_episodes``), and the generator sees V's 64x64 frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.evaluate import (
    _LEVEL_OPTIONS,
    EpisodeResults,
    evaluate_episodes,
    evaluate_procgen_levels,
    record_finished,
)
from agents.policy_view import PolicyView
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
    if view.recurrent:
        return _recurrent_episodes(
            agent, env_id, episodes, n_envs, deterministic, seed, progress, env_options
        )
    if family == "procgen":
        levels = list(range(EVAL_LEVEL_START + seed, EVAL_LEVEL_START + seed + episodes))
        return evaluate_procgen_levels(
            agent, env_id, levels, n_envs, deterministic, seed, progress, **env_options
        )
    if family == "atari":
        return _atari_games(
            agent, env_id, episodes, n_envs, deterministic, seed, progress, env_options
        )
    return evaluate_episodes(
        agent, env_id, episodes, n_envs, deterministic, seed, progress, **env_options
    )


def _atari_games(
    agent: Goggles,
    env_id: str,
    episodes: int,
    n_envs: int,
    deterministic: bool,
    seed: int,
    progress: bool,
    env_options: dict,
) -> EpisodeResults:
    import envs

    options = {**env_options, "clip_reward": False, "terminal_on_life_loss": False}
    n_envs = min(n_envs, episodes)
    venv = envs.make_vec_env(env_id, n_envs, seed, **options)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns: list[float] = []
    lengths: list[int] = []
    bar = tqdm(total=episodes, desc="goggles", unit="game", disable=None if progress else True)
    try:
        colors = ColorFrameStack(venv, agent.space.frames)
        venv.reset()
        color = colors.reset()
        while len(returns) < episodes:
            _, _, dones, infos = venv.step(agent.act(color, deterministic, generator))
            color = colors.step(dones)
            bar.update(record_finished(dones, infos, returns, lengths, episodes))
    finally:
        bar.close()
        venv.close()
    return EpisodeResults(np.asarray(returns), np.asarray(lengths))


def _recurrent_episodes(
    agent: Goggles,
    env_id: str,
    episodes: int,
    n_envs: int,
    deterministic: bool,
    seed: int,
    progress: bool,
    env_options: dict,
) -> EpisodeResults:
    """Episodes of an agent with a recurrent state, restarted per env when its episode ends.
    Procgen: one env per level seed (``EVAL_LEVEL_START + seed`` on), each played once."""
    import envs

    family, _ = envs.parse_env_id(env_id)
    procgen = family == "procgen"
    if procgen:
        seeds = np.arange(EVAL_LEVEL_START + seed, EVAL_LEVEL_START + seed + episodes)
        n = episodes
        options = {k: v for k, v in env_options.items() if k not in _LEVEL_OPTIONS}
        options["levels"] = seeds.tolist()
    else:
        seeds, n, options = None, min(n_envs, episodes), env_options
    venv = envs.make_vec_env(env_id, n, seed, **options)
    generator = torch.Generator(device=agent.device).manual_seed(seed)
    returns = np.full(episodes if procgen else 0, np.nan)
    lengths = np.zeros(episodes if procgen else 0, dtype=np.int64)
    completed = np.zeros(episodes if procgen else 0, dtype=bool)
    found: list[tuple[float, int]] = []
    bar = tqdm(total=episodes, desc="goggles", unit="episode", disable=None if progress else True)
    agent.view.reset()
    try:
        obs = venv.reset()
        while np.isnan(returns).any() if procgen else len(found) < episodes:
            obs, _, dones, infos = venv.step(agent.act(obs, deterministic, generator))
            ended = np.flatnonzero(dones)
            agent.view.reset(ended)
            for i in ended:
                if "episode" not in infos[i]:
                    continue
                result = (float(infos[i]["episode"]["r"]), int(infos[i]["episode"]["l"]))
                if procgen and np.isnan(returns[i]):
                    returns[i], lengths[i] = result
                    completed[i] = bool(infos[i].get("level_complete", False))
                    bar.update(1)
                elif not procgen and len(found) < episodes:
                    found.append(result)
                    bar.update(1)
    finally:
        bar.close()
        venv.close()
        agent.view.reset()
    if procgen:
        return EpisodeResults(returns, lengths, completed, seeds.astype(np.int64))
    return EpisodeResults(
        np.asarray([r for r, _ in found]), np.asarray([n for _, n in found], dtype=np.int64)
    )
