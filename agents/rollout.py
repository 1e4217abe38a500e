"""The one rollout engine: play an actor in a vectorized env, yield each step; its samplers.

``play`` runs the loop every player shares (evaluation, the audit, trajectory recording,
synthesis frames, goggles, hazard sampling), in one of three modes:

- ``levels``: Procgen level seeds, each played exactly once. The env is made in ``levels=``
  mode on the first ones (``level_env``); a slot whose level ends starts the next one
  (``venv.replace_level``), or idles (still stepped, its steps not counted) when none is left.
- ``episodes``: until that many episodes have ended (those with Monitor's ``episode`` info).
- ``steps``: that many vectorized steps.

A recurrent actor's state is reset for every slot whose episode ended (``reset(rows)``).
Per-level work (a random stream per level, a level edit) goes in ``start(slot, k)``.
It lives in ``agents`` (not ``interpret.core``) because evaluation at the end of training
sits on it, and ``agents`` never imports ``interpret``.

    venv = level_env("procgen:coinrun", seeds, 8, seed=0)
    for step in play(venv, lambda obs, playing: view.act(obs), levels=seeds):
        for end in step.ended:  # (slot, k: position in seeds, its last info)
            ...

Samplers (the one way to turn action scores into actions): ``sample_scores`` draws from a
shared torch generator (``Inspectable.act`` and trajectory recording), ``sample_uniforms``
from a uniform per row (the audit's per-level streams, ``level_rng``), ``explore`` swaps in
uniformly random actions with chance epsilon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Level options that select levels; a ``levels`` rollout sets the levels itself.
LEVEL_OPTIONS = ("num_levels", "start_level", "levels", "use_sequential_levels")

Act = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (obs (n, ...), playing (n,)) -> actions
Start = Callable[[int, int], "np.ndarray | None"]  # (slot, k) -> the slot's new obs, or None
Observe = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]  # (obs, dones|None) -> seen


@dataclass
class Ended:
    """An episode that ended: its env ``slot``, ``k`` (its position in ``levels``, or how many
    counted episodes ended before it) and the step's ``info`` (``episode``: return, length)."""

    slot: int
    k: int
    info: dict[str, Any]


@dataclass
class Step:
    """One vectorized step. ``obs`` (n, ...) is what the actor saw, ``actions`` what it did;
    ``next_obs``, ``rewards`` (n,) float, ``dones`` (n,) bool came back (an ended episode's
    slot already reset by the env). ``playing`` (n,) int64: each slot's level position this
    step (-1: idle; 0 outside ``levels`` mode). ``states``: game states before the step
    (``record_states``), else None."""

    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    infos: list[dict[str, Any]]
    playing: np.ndarray
    ended: list[Ended]
    states: list[bytes] | None = None


def level_env(env_id: str, seeds: Sequence[int], n_envs: int, seed: int, **options: Any) -> Any:
    """A Procgen vec env in ``levels=`` mode on the first ``min(n_envs, len(seeds))`` seeds
    (level-selecting options dropped), for ``play(levels=seeds)``."""
    import envs

    options = {k: v for k, v in options.items() if k not in LEVEL_OPTIONS}
    slots = min(n_envs, len(seeds))
    return envs.make_vec_env(env_id, slots, seed, levels=[int(s) for s in seeds[:slots]], **options)


def play(
    venv: Any,
    act: Act,
    *,
    levels: Sequence[int] | None = None,
    episodes: int | None = None,
    steps: int | None = None,
    reset: Callable[[Any], None] | None = None,
    start: Start | None = None,
    observe: Observe | None = None,
    record_states: bool = False,
) -> Iterator[Step]:
    """Play ``act`` in ``venv`` in one mode (exactly one of ``levels``, ``episodes``, ``steps``);
    yield every ``Step``. Closes nothing: the caller owns ``venv``.

    :param reset: a recurrent actor's ``reset(rows)``: called with None first, then with the
        slots whose episode ended after each step
    :param start: called as ``start(slot, k)`` when a slot begins level ``k`` (``levels``
        mode; also for the first ones), after the step that ended its previous level was
        yielded; may return the slot's new observation (a level edit)
    :param observe: what the actor sees: ``observe(obs, None)`` after the reset, then
        ``observe(obs, dones)`` after each step (default: the observation)
    """
    if sum(x is not None for x in (levels, episodes, steps)) != 1:
        raise ValueError("play needs exactly one of levels, episodes, steps")
    n = venv.num_envs
    playing = np.arange(n) if levels is not None else np.zeros(n, np.int64)
    next_level = total = 0
    if reset is not None:
        reset(None)
    obs = venv.reset()
    if levels is not None:
        total, next_level = len(levels), n
        for slot in range(n):
            obs = _begin(obs, slot, slot, start)
    elif episodes is not None:
        total = episodes
    seen = obs if observe is None else observe(obs, None)
    done_count = played = 0
    while done_count < total if steps is None else played < steps:
        states = venv.get_states() if record_states else None
        actions = act(seen, playing)
        obs, rewards, dones, infos = venv.step(actions)
        played += 1
        ended = []
        for slot in np.flatnonzero(dones):
            slot = int(slot)
            if levels is not None and playing[slot] >= 0:
                ended.append(Ended(slot, int(playing[slot]), infos[slot]))
            elif (
                episodes is not None
                and "episode" in infos[slot]
                and done_count + len(ended) < total
            ):
                ended.append(Ended(slot, done_count + len(ended), infos[slot]))
        done_count += len(ended)
        yield Step(seen, actions, obs, rewards, dones, infos, playing.copy(), ended, states)
        if levels is not None and ended:  # after the caller has seen the step: next levels
            obs = obs.copy()  # the yielded ``next_obs`` stays as it came
            for end in ended:
                playing[end.slot] = -1
                if next_level < total:
                    obs[end.slot] = venv.replace_level(end.slot, int(levels[next_level]))
                    playing[end.slot] = next_level
                    obs = _begin(obs, end.slot, next_level, start)
                    next_level += 1
        if reset is not None and dones.any():
            reset(np.flatnonzero(dones))
        seen = obs if observe is None else observe(obs, dones)


def _begin(obs: np.ndarray, slot: int, k: int, start: Start | None) -> np.ndarray:
    frame = start(slot, k) if start is not None else None
    if frame is not None:
        obs[slot] = frame
    return obs


# ---- samplers -------------------------------------------------------------------------------
def sample_scores(
    scores: torch.Tensor, kind: str, deterministic: bool, generator: torch.Generator | None
) -> torch.Tensor | None:
    """Actions (N,) from action scores (N, A) of ``kind``: argmax of Q-values (or of logits when
    ``deterministic``), else one categorical draw per row from ``generator``; None for kinds
    that are not a distribution over discrete actions (the view's ``act`` decides)."""
    if kind == "q" or (kind == "logits" and deterministic):
        return scores.argmax(dim=1)
    if kind == "logits":
        probs = torch.softmax(scores, dim=1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    return None


def sample_uniforms(
    scores: np.ndarray, kind: str, deterministic: bool, uniforms: np.ndarray
) -> np.ndarray:
    """Actions (N,) int64 from scores (N, A) float64, as ``sample_scores`` but each row's draw
    given as a uniform in [0, 1) (N,): the first action whose CDF exceeds it (inverse CDF)."""
    if kind == "q" or deterministic:
        return scores.argmax(axis=1)
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    cdf = np.cumsum(probs, axis=1)
    u = uniforms * cdf[:, -1]
    actions = np.minimum((cdf <= u[:, None]).sum(axis=1), cdf.shape[1] - 1)
    return actions.astype(np.int64)


def level_rng(seed: int, level_seed: int) -> np.random.Generator:
    """The random stream of one level: the same however levels are split among envs."""
    return np.random.default_rng([int(seed), int(level_seed)])


def explore(
    actions: np.ndarray, space: Any, rng: np.random.Generator, epsilon: float
) -> np.ndarray:
    """``actions`` (N, ...) with each row, with chance ``epsilon``, a uniformly random action of
    ``space`` instead (in place; draws N uniforms from ``rng`` even when epsilon is 0)."""
    for i in np.flatnonzero(rng.random(len(actions)) < epsilon):
        if hasattr(space, "n"):
            actions[i] = int(rng.integers(space.n))
        else:
            actions[i] = rng.uniform(space.low, space.high).astype(space.dtype)
    return actions
