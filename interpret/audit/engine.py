"""Audit a CoinRun policy: play N levels, label every failure by cause, keep what explains it.

Hilton et al. (2020), "Dissecting failure": each level is played once; an episode that ends
without the coin is labelled by what ended it (buzzsaw, enemy moving left or right, lava,
timeout, or several), read from the game state before the fatal step
(`interpret.audit.causes`). The audit also keeps the last steps of the first failed
episodes as `Trajectory` objects (for the attribution interface) and the steps with the most
extreme GAE advantages (surprises: the value was badly wrong).

Levels are split into chunks played by an `agents.executor.Executor` (local processes by
default, Ray as an option), each chunk by the rollout engine (`agents.rollout.play`, levels
scheduled onto a vectorized env's slots). Actions are sampled with a random stream per level
(`agents.rollout.level_rng`: the audit seed and the level seed), so the outcome of a level does
not depend on how levels were split among workers.

Two engines play a chunk, with the same outcome for every level (tested, and compared side by
side in ``bench/audit.py``):

- ``"replay"`` (the default) records only actions, rewards and values while playing, runs the
  network on the envs still playing only, and samples every env's action in one vectorized
  step. Procgen is deterministic given the level, its options and the actions, so what a
  failure needs (the game state before the fatal step, the frames of a kept episode or of an
  extreme step) is recovered afterwards by replaying the recorded actions in a fresh game of
  the same level (tested: the replayed state bytes equal the ones read live).
- ``"stepwise"`` (the engine before it, kept for comparison) reads every env's game state
  before every step and keeps every frame.

``precision="bf16"`` runs the network under bfloat16 autocast (`agents.precision`); the
outcomes then differ from fp32's where the rounding changes a sampled action.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import agents
from agents.evaluate import wilson_interval
from agents.precision import autocast, check_precision
from agents.rollout import LEVEL_OPTIONS, Act, Step, level_env, level_rng, play, sample_uniforms
from envs.coinrun_state import ENEMY, SAW, invisible_buzzsaws, without_hazards
from interpret.audit.causes import CAUSES, TABLE_COLUMNS, FailureCause, FailureLabeler
from interpret.core.trajectory import GAE_LAMBDA, GAMMA, Trajectory, gae_advantages

if TYPE_CHECKING:
    from agents.policy_view import PolicyView

# Level edits for counterfactual audits (the paper's controls): name -> state edit.
LEVEL_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "invisible-buzzsaws": invisible_buzzsaws,
    "no-buzzsaws": functools.partial(without_hazards, types=(SAW,)),
    "no-enemies": functools.partial(without_hazards, types=(ENEMY,)),
    "no-hazards": functools.partial(without_hazards, types=(SAW, ENEMY), lava=True),
}


@dataclass(frozen=True)
class AuditTask:
    """One chunk of levels for one worker (picklable)."""

    model: str
    env_id: str
    env_options: dict[str, Any]
    levels: tuple[tuple[int, int], ...]  # (index in the audit, level seed)
    seed: int = 0
    n_envs: int = 16
    deterministic: bool = False
    context: int = 128  # steps kept before the end of each kept failed episode
    keep_failures: int = 12  # failed episodes kept: those of lowest level index
    extremes: int = 8  # steps kept per sign of advantage
    level_edit: str | None = None
    trust_pickle: bool = False
    threads: int = 0  # torch threads in the worker (0: leave as is)
    engine: str = "replay"  # or "stepwise" (see the module docstring)
    precision: str = "fp32"  # or "bf16"


ENGINES = ("replay", "stepwise")
_EPISODE_CAPACITY = 1024  # steps per env the replay engine's buffers start with (CoinRun: 1,000)


@dataclass
class ExtremeStep:
    """A step with an extreme GAE advantage; ``observation`` (H, W, 3) uint8."""

    advantage: float
    value: float
    reward: float
    action: int
    level_index: int
    level_seed: int
    step: int  # within its episode
    episode_length: int
    completed: bool
    observation: np.ndarray | None  # None only while the "replay" engine has yet to replay it


@dataclass
class ChunkResult:
    """What one chunk of levels gave. Arrays are (levels in the chunk,), in chunk order."""

    indices: np.ndarray
    level_seeds: np.ndarray
    completed: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    causes: list[FailureCause | None]
    fatal_states: list[bytes | None]
    failures: list[tuple[int, Trajectory]]  # (level index, last `context` steps), lowest first
    most_negative: list[ExtremeStep]
    most_positive: list[ExtremeStep]
    # worker_play_s, worker_setup_s, worker_cpu_s (the worker process, all its threads),
    # state_read_s (reading the pre-step state every step: "stepwise"), replay_s (replaying
    # failures and extreme steps for states, frames: "replay"), label_s (labelling fatal
    # steps), steps, network_rows (observations the network was run on)
    timings: dict[str, float]


@dataclass
class AuditResult:
    """An audit of ``len(level_seeds)`` levels, merged over chunks, in level order."""

    env_id: str
    env_options: dict[str, Any]
    level_seeds: np.ndarray  # (N,) int64
    completed: np.ndarray  # (N,) bool
    returns: np.ndarray  # (N,) float
    lengths: np.ndarray  # (N,) int
    causes: list[FailureCause | None]  # None where completed
    fatal_states: list[bytes | None]
    failures: list[tuple[int, Trajectory]]
    most_negative: list[ExtremeStep]
    most_positive: list[ExtremeStep]
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.level_seeds)

    def completion(self) -> dict[str, Any]:
        rate = _rate(int(self.completed.sum()), self.n)
        return {"levels": self.n, "completed": rate.pop("count"), **rate}

    def failure_table(self) -> dict[str, dict[str, Any]]:
        """Per paper column (buzzsaw / enemy left / enemy right / multiple or other), and per
        exact cause: count, share of all levels and its 95% Wilson interval."""
        failed = [c for c in self.causes if c is not None]
        categories = [c.category for c in failed]
        rows = {column: _rate(categories.count(column), self.n) for column in TABLE_COLUMNS}
        rows["all failures"] = _rate(len(failed), self.n)
        return rows

    def cause_breakdown(self) -> dict[str, dict[str, Any]]:
        """Every exact label seen ("buzzsaw", "lava + timeout", "timeout", ...): count and rate;
        and, per single cause, how many failures involved it."""
        failed = [c for c in self.causes if c is not None]
        labels = Counter(c.label for c in failed)
        out = {label: _rate(count, self.n) for label, count in sorted(labels.items())}
        for cause in CAUSES:
            involved = sum(cause in c.causes for c in failed)
            out[f"involving {cause}"] = _rate(involved, self.n)
        return out


def _rate(count: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(count, n)
    return {"count": count, "rate": count / n if n else 0.0, "ci95": [lo, hi]}


# ---- one worker -----------------------------------------------------------------------------
_cached_view = functools.cache(agents.load)  # one view and one labeler per worker process
_cached_labeler = functools.cache(FailureLabeler)


class _Policy:
    """Scores, values and actions of a view for a batch, at the audit's precision; actions
    drawn by `agents.rollout.sample_uniforms` from one uniform per row (each level's stream)."""

    def __init__(self, view: PolicyView, deterministic: bool, precision: str = "fp32") -> None:
        self.view = view
        self.deterministic = deterministic
        self.precision = check_precision(precision)
        self.recurrent = view.recurrent

    def sample(self, obs: np.ndarray, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions (n,) int64, values (n,) float32; NaN where the view has none) for
        observations (n, ...) and each row's next uniform draw (n,) in [0, 1)."""
        n = len(obs)
        if self.recurrent:  # World Models: the controller keeps (h, c) between calls
            actions = np.asarray(self.view.act(obs, deterministic=True)).reshape(n)
            return actions.astype(np.int64), np.full(n, np.nan, np.float32)
        with torch.inference_mode():
            x = self.view.preprocess(obs)
            with autocast(self.precision, x.device):
                out = self.view.outputs(x)
            out = {key: value.float() for key, value in out.items()}  # whatever the precision
            value = self.view.state_value(out)
        scores = self.view.action_scores(out).double().cpu().numpy()  # (n, A) float64
        values = value.cpu().numpy() if value is not None else np.full(n, np.nan)
        actions = sample_uniforms(scores, self.view.score_kind, self.deterministic, uniforms)
        return actions, values.astype(np.float32)


class _Episode:
    """The steps of one running episode, kept whole (extreme steps may lie anywhere; CoinRun
    episodes end by 1,000 steps)."""

    def __init__(self, index: int, level_seed: int, rng: np.random.Generator | None) -> None:
        self.index, self.level_seed, self.rng = index, level_seed, rng
        self.obs: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.values: list[float] = []
        self.state: bytes | None = None  # before the latest step


def _push(heap: list, item: ExtremeStep, key: float, limit: int) -> None:
    """Keep the `limit` items of largest `key` (ties: lower level index, then earlier step)."""
    entry = (key, -item.level_index, -item.step, id(item), item)
    if len(heap) < limit:
        heapq.heappush(heap, entry)
    elif entry[:3] > heap[0][:3]:
        heapq.heapreplace(heap, entry)


def play_levels(task: AuditTask) -> ChunkResult:
    """Play every level of `task` once (a worker's job); label the failures."""
    return _play_replay(task) if task.engine == "replay" else _play_stepwise(task)


class _Chunk:
    """What both engines share: the chunk's levels, view and env (`agents.rollout.play`
    schedules the levels onto it), and the outcomes gathered so far, in chunk order."""

    def __init__(self, task: AuditTask) -> None:
        self.began, self.cpu_began = time.perf_counter(), time.process_time()
        if task.threads:
            torch.set_num_threads(task.threads)
        self.task, self.levels = task, list(task.levels)
        self.seeds = [s for _, s in self.levels]
        view = _cached_view(task.model, trust_pickle=task.trust_pickle)
        self.policy = _Policy(view, task.deterministic, task.precision)
        self.labeler = _cached_labeler()
        self.edit = LEVEL_EDITS[task.level_edit] if task.level_edit is not None else None
        self.options = {k: v for k, v in task.env_options.items() if k not in LEVEL_OPTIONS}
        self.venv = level_env(task.env_id, self.seeds, task.n_envs, task.seed, **self.options)
        n = len(self.levels)
        self.completed, self.returns = np.zeros(n, bool), np.zeros(n)
        self.lengths = np.zeros(n, np.int64)
        self.causes: list[FailureCause | None] = [None] * n
        self.fatal_states: list[bytes | None] = [None] * n
        self.failures: list[tuple[int, Trajectory]] = []
        self.negative: list = []
        self.positive: list = []
        self.times: dict[str, float] = {"state_read_s": 0.0, "replay_s": 0.0, "label_s": 0.0}
        self.times |= {"steps": 0, "network_rows": 0}
        self.play_began = 0.0

    def play(self, act: Act, start: Callable[[int, int], np.ndarray | None]) -> Iterator[Step]:
        """The steps of every level, each played once; the env is closed at the end."""
        self.play_began = time.perf_counter()
        try:
            yield from play(self.venv, act, levels=self.seeds, reset=self.policy.view.reset,
                            start=start)  # fmt: skip
        finally:
            self.venv.close()

    def edit_level(self, slot: int) -> np.ndarray | None:
        """Apply the level edit to the game just started in `slot`; its new frame (or None)."""
        return None if self.edit is None else _apply_edit(self.venv, slot, self.edit)

    def outcome(self, k: int, info: dict, state: bytes | None, action: int) -> bool:
        """Record level `k`'s outcome; label a failure from the state before its last step."""
        self.completed[k] = bool(info["level_complete"])
        self.returns[k] = info["episode"]["r"]
        self.lengths[k] = info["episode"]["l"]
        if not self.completed[k]:
            assert state is not None  # both engines hold the state before a failure's last step
            clock = time.perf_counter()
            self.causes[k] = self.labeler.cause(state, action)
            self.times["label_s"] += time.perf_counter() - clock
            self.fatal_states[k] = state
        return bool(self.completed[k])

    def result(self) -> ChunkResult:
        return ChunkResult(
            indices=np.array([i for i, _ in self.levels], np.int64),
            level_seeds=np.array(self.seeds, np.int64),
            completed=self.completed,
            returns=self.returns,
            lengths=self.lengths,
            causes=self.causes,
            fatal_states=self.fatal_states,
            failures=sorted(self.failures, key=lambda f: f[0]),
            most_negative=[e[-1] for e in self.negative],
            most_positive=[e[-1] for e in self.positive],
            timings={
                "worker_play_s": time.perf_counter() - self.play_began,
                "worker_setup_s": self.play_began - self.began,
                "worker_cpu_s": time.process_time() - self.cpu_began,
                **self.times,
            },
        )


def _apply_edit(venv: Any, slot: int, edit: Callable[[bytes], bytes]) -> np.ndarray:
    """Apply the state edit to the game in `slot` of `venv`; its new frame."""
    venv.set_states([edit(venv.get_states([slot])[0])], [slot])
    return venv.observations()[slot]


def _play_stepwise(task: AuditTask) -> ChunkResult:
    """The "stepwise" engine: every env's game state is read before every step, every frame
    kept."""
    chunk = _Chunk(task)
    running: list[_Episode | None] = [None] * chunk.venv.num_envs

    def start(slot: int, k: int) -> np.ndarray | None:
        index, level_seed = chunk.levels[k]
        rng = None if task.deterministic else level_rng(task.seed, level_seed)
        running[slot] = _Episode(index, level_seed, rng)
        return chunk.edit_level(slot)

    def act(obs: np.ndarray, _: np.ndarray) -> np.ndarray:
        clock = time.perf_counter()
        states = chunk.venv.get_states()
        chunk.times["state_read_s"] += time.perf_counter() - clock
        uniforms = np.array([e.rng.random() if e and e.rng else 0.0 for e in running])
        actions, values = chunk.policy.sample(obs, uniforms)
        chunk.times["network_rows"] += len(obs)
        for slot, episode in enumerate(running):
            if episode is not None:
                episode.obs.append(obs[slot].copy())  # not a view: frees the batch
                episode.actions.append(int(actions[slot]))
                episode.values.append(float(values[slot]))
                episode.state = states[slot]
        return actions

    for step in chunk.play(act, start):
        for slot, episode in enumerate(running):
            if episode is not None:
                episode.rewards.append(float(step.rewards[slot]))
                chunk.times["steps"] += 1
        for end in step.ended:
            episode = running[end.slot]
            assert episode is not None
            done = chunk.outcome(end.k, end.info, episode.state, episode.actions[-1])
            advantages = _finish(episode, done, task, chunk.negative, chunk.positive)
            if not done and _would_keep(chunk.failures, episode.index, task):
                _keep_lowest(chunk.failures, episode, advantages, task)
            running[end.slot] = None
    return chunk.result()


class ReplayDivergedError(RuntimeError):
    """A replayed episode did not end as the live one did (the game was not deterministic)."""


class _Replayer:
    """Plays a level again from its recorded actions in a fresh game made like the live ones
    (the same env options, procgen seed and level edit): Procgen is deterministic given those,
    so the replay passes through the live episode's states and frames."""

    def __init__(
        self, env_id: str, seed: int, options: dict[str, Any], edit: Callable | None
    ) -> None:
        self.env_id, self.seed, self.options, self.edit = env_id, seed, options, edit
        self.venv: Any = None
        self.seconds = 0.0

    def play(
        self,
        level_seed: int,
        actions: np.ndarray,
        until: int,
        frames: Sequence[int] = (),
        check_failure: bool = False,
    ) -> tuple[bytes, dict[int, np.ndarray]]:
        """(the game state after ``actions[:until]``, {t: the frame ``actions[t]`` was taken on}
        for t in `frames` (each <= until)). With `check_failure`, ``actions[until]`` must then
        end the episode without the coin, as it did live (else `ReplayDivergedError`)."""
        import envs

        clock = time.perf_counter()
        if self.venv is None:
            self.venv = envs.make_vec_env(
                self.env_id, 1, self.seed, levels=[int(level_seed)], **self.options
            )
            obs = self.venv.reset()[0]
        else:
            obs = self.venv.replace_level(0, int(level_seed))
        if self.edit is not None:
            obs = _apply_edit(self.venv, 0, self.edit)
        wanted, kept = set(frames), {}
        for t in range(until):
            if t in wanted:
                kept[t] = obs
            step_obs, _, done, _ = self.venv.step(actions[t : t + 1])
            if done[0]:
                raise ReplayDivergedError(f"level {level_seed}: the replay ended at step {t}")
            obs = step_obs[0]
        if until in wanted:
            kept[until] = obs
        state = self.venv.get_states([0])[0]
        if check_failure:
            _, _, done, infos = self.venv.step(actions[until : until + 1])
            if not done[0] or infos[0]["level_complete"]:
                raise ReplayDivergedError(f"level {level_seed}: the replayed last step differs")
        self.seconds += time.perf_counter() - clock
        return state, kept

    def close(self) -> None:
        if self.venv is not None:
            self.venv.close()


def _play_replay(task: AuditTask) -> ChunkResult:
    """The "replay" engine (see the module docstring): the same outcomes as `_play_stepwise`."""
    chunk = _Chunk(task)
    slots = chunk.venv.num_envs
    replayer = _Replayer(task.env_id, task.seed, chunk.options, chunk.edit)
    recorded: dict[int, np.ndarray] = {}  # level index -> actions, for extreme steps' frames
    # Per slot, the running episode's steps so far (grown if an episode outlasts them).
    capacity = _EPISODE_CAPACITY
    actions = np.zeros((slots, capacity), np.int64)
    rewards = np.zeros((slots, capacity), np.float32)
    values = np.zeros((slots, capacity), np.float32)
    uniforms = np.zeros((slots, capacity))  # each level's stream, drawn ahead
    rngs: list[np.random.Generator | None] = [None] * slots
    length = np.zeros(slots, np.int64)
    every = np.arange(slots)

    def start(slot: int, k: int) -> np.ndarray | None:
        length[slot] = 0
        if not task.deterministic:
            rng = level_rng(task.seed, chunk.levels[k][1])
            rngs[slot] = rng
            uniforms[slot] = rng.random(capacity)
        return chunk.edit_level(slot)

    def grow() -> None:  # an episode longer than the buffers: double them
        nonlocal actions, rewards, values, uniforms, capacity
        actions, rewards, values = (np.concatenate([b, np.zeros_like(b)], axis=1)
                                    for b in (actions, rewards, values))  # fmt: skip
        more = [r.random(capacity) if r is not None else np.zeros(capacity) for r in rngs]
        uniforms = np.concatenate([uniforms, np.stack(more)], axis=1)
        capacity *= 2

    def act(obs: np.ndarray, playing: np.ndarray) -> np.ndarray:
        active = np.flatnonzero(playing >= 0)
        if length[active].max() >= capacity:
            grow()
        # The network sees the envs still playing only (all of them for a recurrent view,
        # whose rows keep their memory).
        rows = every if chunk.policy.recurrent or len(active) == slots else active
        chunk.times["network_rows"] += len(rows)
        chosen, scored = chunk.policy.sample(
            obs if len(rows) == slots else obs[rows],
            uniforms[rows, np.minimum(length[rows], capacity - 1)],
        )
        if len(rows) == slots:
            step_actions = chosen
            chosen, scored = chosen[active], scored[active]
        else:
            step_actions = np.zeros(slots, np.int64)
            step_actions[active] = chosen
        actions[active, length[active]] = chosen
        values[active, length[active]] = scored
        return step_actions

    def finish(slot: int, k: int, info: dict) -> None:
        index, level_seed = chunk.levels[k]
        count = int(length[slot])
        episode = _Episode(index, level_seed, None)
        episode.actions = actions[slot, :count].tolist()
        episode.rewards = rewards[slot, :count].tolist()
        episode.values = values[slot, :count].tolist()
        frames: dict[int, np.ndarray] = {}
        state = None
        keep = not info["level_complete"] and _would_keep(chunk.failures, index, task)
        if not info["level_complete"]:
            shown = range(_context_start(count, task), count) if keep else ()
            state, frames = replayer.play(
                level_seed, actions[slot, :count], count - 1, shown, check_failure=True
            )
        done = chunk.outcome(k, info, state, episode.actions[-1])
        advantages = _finish(episode, done, task, chunk.negative, chunk.positive)
        if task.extremes:
            recorded[index] = actions[slot, :count].astype(np.uint8)
        if keep:
            observations = np.stack([frames[t] for t in sorted(frames)])
            _keep_lowest(chunk.failures, episode, advantages, task, observations)

    try:
        for step in chunk.play(act, start):
            active = np.flatnonzero(step.playing >= 0)
            rewards[active, length[active]] = step.rewards[active]
            length[active] += 1
            chunk.times["steps"] += len(active)
            for end in step.ended:
                finish(end.slot, end.k, end.info)
        _replay_extremes(replayer, recorded, chunk.negative + chunk.positive)
    finally:
        replayer.close()
    chunk.times["replay_s"] = replayer.seconds
    return chunk.result()


def _replay_extremes(replayer: _Replayer, recorded: dict[int, np.ndarray], heap: list) -> None:
    """Fill in the frames of the extreme steps kept in the heaps (one replay per level)."""
    by_level: dict[int, list[ExtremeStep]] = {}
    for entry in heap:
        item = entry[-1]
        if item.observation is None:
            by_level.setdefault(item.level_index, []).append(item)
    for index, items in sorted(by_level.items()):
        wanted = [item.step for item in items]
        _, frames = replayer.play(items[0].level_seed, recorded[index], max(wanted), wanted)
        for item in items:
            item.observation = frames[item.step]


def _finish(
    episode: _Episode, completed: bool, task: AuditTask, negative: list, positive: list
) -> np.ndarray:
    """GAE of the finished episode (no bootstrap: it ended); offer its most negative and most
    positive step to the extremes (at most one per episode each, as the paper's bookmarks)."""
    rewards = np.asarray(episode.rewards, np.float32)
    values = np.asarray(episode.values, np.float32)
    dones = np.zeros(len(rewards), bool)
    dones[-1] = True
    advantages = gae_advantages(rewards, values, dones, 0.0, GAMMA, GAE_LAMBDA)
    if task.extremes and np.isfinite(advantages).all():  # one step per episode and sign
        for t, heap, sign in ((int(np.argmin(advantages)), negative, -1.0),
                              (int(np.argmax(advantages)), positive, 1.0)):  # fmt: skip
            item = ExtremeStep(
                advantage=float(advantages[t]),
                value=float(values[t]),
                reward=float(rewards[t]),
                action=episode.actions[t],
                level_index=episode.index,
                level_seed=episode.level_seed,
                step=t,
                episode_length=len(rewards),
                completed=completed,
                observation=episode.obs[t] if episode.obs else None,  # "replay": filled later
            )
            _push(heap, item, sign * item.advantage, task.extremes)
    return advantages


def _would_keep(kept: list[tuple[int, Trajectory]], index: int, task: AuditTask) -> bool:
    """Whether `_keep_lowest` would keep a failed episode of level index `index` now."""
    if task.keep_failures < 1:
        return False
    return len(kept) < task.keep_failures or max(i for i, _ in kept) > index


def _keep_lowest(
    kept: list[tuple[int, Trajectory]],
    episode: _Episode,
    advantages: np.ndarray,
    task: AuditTask,
    observations: np.ndarray | None = None,
) -> None:
    """Keep the `task.keep_failures` failed episodes of lowest level index seen so far (so the
    merged audit keeps the first ones by level order, however the levels were split).
    `observations`: those of the kept steps, when the episode does not hold its frames.
    Called for an episode `_would_keep` keeps."""
    if len(kept) >= task.keep_failures:
        del kept[max(range(len(kept)), key=lambda i: kept[i][0])]
    kept.append((episode.index, _trajectory(episode, advantages, task, observations)))


def _context_start(length: int, task: AuditTask) -> int:
    """The first step of a failed episode of `length` steps that its trajectory keeps."""
    return max(0, length - task.context)


def _trajectory(
    episode: _Episode,
    advantages: np.ndarray,
    task: AuditTask,
    observations: np.ndarray | None = None,
) -> Trajectory:
    """The last `task.context` steps of a finished, failed episode."""
    start = _context_start(len(episode.actions), task)
    t = len(episode.actions) - start
    dones = np.zeros(t, bool)
    dones[-1] = True
    values = np.asarray(episode.values[start:], np.float32)
    if observations is None:
        observations = np.stack(episode.obs[start:])
    return Trajectory(
        observations=observations,
        actions=np.asarray(episode.actions[start:], np.int64),
        rewards=np.asarray(episode.rewards[start:], np.float32),
        dones=dones,
        values=values,
        logits=np.zeros((t, 0), np.float32),
        level_seeds=np.full(t, episode.level_seed, np.int64),
        level_complete=np.zeros(t, bool),
        advantages=advantages[start:].astype(np.float32),
        metadata={
            "env_id": task.env_id,
            "env_options": task.env_options,
            "model": task.model,
            "seed": task.seed,
            "level_index": episode.index,
            "first_step": start,
            "episode_length": len(episode.actions),
            "level_edit": task.level_edit,
            "gamma": GAMMA,
            "gae_lambda": GAE_LAMBDA,
        },
    )


# ---- the whole audit ------------------------------------------------------------------------
def chunk_levels(level_seeds: Sequence[int], chunks: int) -> list[tuple[tuple[int, int], ...]]:
    """Split (index, seed) pairs into `chunks` contiguous, nearly equal parts (none empty)."""
    pairs = list(enumerate(int(s) for s in level_seeds))
    chunks = max(1, min(chunks, len(pairs)))
    bounds = np.linspace(0, len(pairs), chunks + 1).round().astype(int)
    return [tuple(pairs[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def run_audit(
    model: str,
    env_id: str,
    level_seeds: Sequence[int],
    *,
    env_options: dict[str, Any] | None = None,
    seed: int = 0,
    executor: Any = None,
    n_envs: int = 16,
    chunks: int | None = None,
    deterministic: bool = False,
    context: int = 128,
    keep_failures: int = 12,
    extremes: int = 8,
    level_edit: str | None = None,
    trust_pickle: bool = False,
    progress: Callable[[int], None] | None = None,
    engine: str = "replay",
    precision: str = "fp32",
) -> AuditResult:
    """Play each of `level_seeds` once with the model at `model` (a path or ``zoo:NAME``).

    :param executor: an `agents.executor.Executor` (None: this process)
    :param chunks: how many chunks the levels are split into (default: 2 per worker)
    :param progress: called with the number of levels finished after each chunk
    :param engine: ``"replay"`` or ``"stepwise"`` (the same outcomes; see the module docstring)
    :param precision: ``"fp32"`` or ``"bf16"`` (the network under bfloat16 autocast)
    """
    from agents.executor import SerialExecutor

    if not len(level_seeds):
        raise ValueError("no levels to audit")
    if engine not in ENGINES:
        raise ValueError(f"unknown audit engine {engine!r}; valid: {', '.join(ENGINES)}")
    if level_edit is not None and level_edit not in LEVEL_EDITS:
        raise ValueError(f"unknown level edit {level_edit!r}; valid: {', '.join(LEVEL_EDITS)}")
    check_precision(precision)
    executor = executor or SerialExecutor()
    workers = max(1, executor.workers)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    parts = chunk_levels(level_seeds, chunks or 2 * workers)
    tasks = [
        AuditTask(
            model=str(model),
            env_id=env_id,
            env_options=dict(env_options or {}),
            levels=part,
            seed=seed,
            n_envs=n_envs,
            deterministic=deterministic,
            context=context,
            keep_failures=keep_failures,
            extremes=extremes,
            level_edit=level_edit,
            trust_pickle=trust_pickle,
            threads=threads,
            engine=engine,
            precision=precision,
        )
        for part in parts
    ]
    began = time.perf_counter()
    results: list[ChunkResult] = []
    for result in executor.imap(play_levels, tasks):
        results.append(result)
        if progress is not None:
            progress(len(result.indices))
    wall = time.perf_counter() - began
    return merge_chunks(results, env_id, dict(env_options or {}), keep_failures, extremes, wall)


def merge_chunks(
    results: list[ChunkResult],
    env_id: str,
    env_options: dict[str, Any],
    keep_failures: int,
    extremes: int,
    wall_s: float,
) -> AuditResult:
    """One `AuditResult` in level order from the chunks' results."""
    indices = np.concatenate([r.indices for r in results])
    order = np.argsort(indices, kind="stable")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(r, name) for r in results])[order]

    def flat(name: str) -> list:
        items = [x for r in results for x in getattr(r, name)]
        return [items[i] for i in order]

    failures = sorted((f for r in results for f in r.failures), key=lambda f: f[0])
    negative = sorted((e for r in results for e in r.most_negative),
                      key=lambda e: (e.advantage, e.level_index, e.step))[:extremes]  # fmt: skip
    positive = sorted((e for r in results for e in r.most_positive),
                      key=lambda e: (-e.advantage, e.level_index, e.step))[:extremes]  # fmt: skip
    timings = {
        "wall_s": wall_s,
        **{key: sum(r.timings[key] for r in results) for key in results[0].timings},
        "levels_per_s": len(indices) / wall_s if wall_s > 0 else float("nan"),
    }
    return AuditResult(
        env_id=env_id,
        env_options=env_options,
        level_seeds=cat("level_seeds"),
        completed=cat("completed"),
        returns=cat("returns"),
        lengths=cat("lengths"),
        causes=flat("causes"),
        fatal_states=flat("fatal_states"),
        failures=failures[:keep_failures],
        most_negative=negative,
        most_positive=positive,
        timings=timings,
    )
