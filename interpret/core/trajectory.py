"""``Trajectory``: what an agent saw and did, recorded for interpreters; saved as ``.npz``.

One ``Trajectory`` is one environment's consecutive steps (possibly several episodes, split by
``dones``). ``record_trajectories`` plays a trained agent (``agents.load``'s view) in a
vectorized env (the rollout engine, ``agents.rollout.play``) and returns one per env, with GAE
advantages computed from the recorded values.
Files are plain ``.npz`` arrays (no pickle): Procgen state bytes are stored concatenated with
offsets, metadata as a JSON string.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.fileio import InputFileError, atomic_path, read_npz
from agents.policy_view import PolicyView
from agents.rollout import explore, play, sample_scores

GAMMA = 0.999
GAE_LAMBDA = 0.95


@dataclass
class Trajectory:
    """T steps of one env. ``observations[t]`` is what the agent saw when it chose
    ``actions[t]``; ``rewards[t]``/``dones[t]`` came back from that step.

    Attributes:
        observations: (T, *obs_shape) uint8, as the env gives them.
        actions: (T,) int64 for discrete actions, (T, *action_shape) float32 otherwise.
        rewards: (T,) float32.
        dones: (T,) bool, True on an episode's last step.
        values: (T,) float32 value estimate (max-Q for a Q-network; NaN if the agent has none).
        logits: (T, A) float32 action scores: policy logits, Q-values, or a Gaussian's mean.
        level_seeds: (T,) int64 Procgen level seed of each step (-1 outside Procgen).
        level_complete: (T,) bool, True on the last step of an episode that reached its goal.
        advantages: (T,) float32 GAE advantages (NaN where values are NaN).
        states: Procgen game state bytes before each step (``get_states``), or None.
        metadata: env id, options, model, seed, gamma, lambda, what ``logits`` hold.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    values: np.ndarray
    logits: np.ndarray
    level_seeds: np.ndarray
    level_complete: np.ndarray
    advantages: np.ndarray
    states: list[bytes] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def episode_bounds(self) -> list[tuple[int, int]]:
        """[(start, stop)] of each episode (the last one may be unfinished)."""
        ends = np.flatnonzero(self.dones) + 1
        starts = np.concatenate([[0], ends])
        stops = np.concatenate([ends, [len(self)]])
        return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True) if b > a]

    # -- files ------------------------------------------------------------------------------
    _ARRAYS = (
        "observations",
        "actions",
        "rewards",
        "dones",
        "values",
        "logits",
        "level_seeds",
        "level_complete",
        "advantages",
    )

    def file_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of its ``.npz`` file (what `save` writes and `load` reads)."""
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        arrays["metadata"] = np.array(json.dumps(self.metadata))
        if self.states is not None:
            arrays["state_bytes"] = np.frombuffer(b"".join(self.states), dtype=np.uint8)
            arrays["state_offsets"] = np.cumsum([0] + [len(s) for s in self.states])
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (atomically, compressed, no pickle)."""
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **self.file_arrays())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a file `save` wrote; `agents.fileio.InputFileError` (one line) for a missing,
        damaged or foreign file (other arrays, inconsistent lengths, no steps)."""
        data = read_npz(path, "trajectory file")
        missing = [name for name in (*cls._ARRAYS, "metadata") if name not in data]
        if missing:
            raise InputFileError(
                f"{path} is not a trajectory file (no {', '.join(missing[:3])}); trajectories "
                "are the .npz files that interpret.core.trajectory.Trajectory.save writes"
            )
        fields = {name: data[name] for name in cls._ARRAYS}
        lengths = {name: len(a) if a.ndim else -1 for name, a in fields.items()}
        if len(set(lengths.values())) != 1 or lengths["actions"] < 1:
            raise InputFileError(f"{path}: a trajectory's arrays must have one length >= 1")
        if fields["observations"].dtype != np.uint8:
            raise InputFileError(f"{path}: observations must be uint8")
        states = None
        if "state_bytes" in data:
            raw, offsets = data["state_bytes"].tobytes(), data.get("state_offsets")
            if offsets is None or len(offsets) != lengths["actions"] + 1:
                raise InputFileError(f"{path}: state_offsets do not match the steps")
            states = [raw[int(a) : int(b)] for a, b in itertools.pairwise(offsets)]
        try:
            metadata = json.loads(str(data["metadata"]))
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise InputFileError(f"{path}: its metadata is not a JSON object")
        return cls(**fields, states=states, metadata=metadata)


def gae_advantages(
    rewards: np.ndarray,
    values: np.ndarray,
    dones: np.ndarray,
    last_value: float,
    gamma: float = GAMMA,
    lam: float = GAE_LAMBDA,
) -> np.ndarray:
    """Generalized advantage estimates (T,) for one env's steps.

    ``last_value`` is the value of the observation after the last step (ignored if that step
    ended an episode). No bootstrapping across ``dones``.
    """
    advantages = np.zeros(len(rewards), dtype=np.float32)
    running = 0.0
    next_value = last_value
    for t in reversed(range(len(rewards))):
        alive = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
        next_value = values[t]
    return advantages


@torch.no_grad()
def _scores_and_values(
    view: PolicyView, obs: np.ndarray, state: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    out = view.outputs(view.preprocess(obs), state)
    value = view.state_value(out)
    values = value.float().cpu().numpy() if value is not None else np.full(len(obs), np.nan)
    return view.action_scores(out).float().cpu().numpy(), values


def record_trajectories(
    view: PolicyView,
    env_id: str,
    *,
    n_envs: int = 4,
    n_steps: int = 256,
    seed: int = 0,
    deterministic: bool = False,
    epsilon: float = 0.0,
    record_states: bool = False,
    **env_options: Any,
) -> list[Trajectory]:
    """Play ``view`` for ``n_steps`` in ``n_envs`` envs; one ``Trajectory`` per env.

    A recurrent view (World Models) acts with its state carried from step to step and reset
    for each env whose episode ended; ``values`` are NaN when the view has no value head.

    :param epsilon: chance per step of a uniformly random action instead of the agent's (a
        recurrent view's state still advances with the action the agent chose)
    :param record_states: keep Procgen's state bytes before each step (Procgen only)
    :param env_options: passed to ``envs.make_vec_env`` (e.g. ``distribution_mode="easy"``)
    """
    import envs

    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    family, _ = envs.parse_env_id(env_id)
    if record_states and family != "procgen":
        raise ValueError("record_states is only available for procgen envs")
    vec = envs.make_vec_env(env_id, n_envs, seed, **env_options)
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=view.device).manual_seed(seed)
    scored: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # scores, values, level seeds

    def act(obs: np.ndarray, _: np.ndarray) -> np.ndarray:
        # Scores come from ``outputs`` at the state ``act`` starts from (recurrent views).
        scores, values = _scores_and_values(view, obs, view.state)
        procgen = family == "procgen"
        seeds = vec.current_level_seeds() if procgen else np.full(len(obs), -1, np.int64)
        scored.append((scores, values, seeds))
        actions: torch.Tensor | np.ndarray | None = None
        if not view.recurrent:
            scores_t = torch.as_tensor(scores)
            actions = sample_scores(scores_t, view.score_kind, deterministic, generator)
        if actions is None:
            actions = view.act(obs, deterministic=deterministic, generator=generator)
        return explore(np.asarray(actions), vec.action_space, rng, epsilon)

    try:
        steps = list(play(vec, act, steps=n_steps, reset=view.reset, record_states=record_states))
        _, last_values = _scores_and_values(view, steps[-1].next_obs, view.state)
    finally:
        vec.close()

    metadata = {
        "env_id": env_id,
        "env_options": env_options,
        "model": str(view.source) if view.source is not None else None,
        "seed": seed,
        "epsilon": epsilon,
        "deterministic": deterministic,
        "gamma": GAMMA,
        "gae_lambda": GAE_LAMBDA,
        "scores": view.score_kind,
    }
    trajectories = []
    for i in range(n_envs):
        rewards = np.array([step.rewards[i] for step in steps], dtype=np.float32)
        dones = np.array([step.dones[i] for step in steps], dtype=bool)
        values = np.array([v[i] for _, v, _ in scored], dtype=np.float32)
        infos = [step.infos[i] for step in steps]
        trajectories.append(
            Trajectory(
                observations=np.stack([step.obs[i] for step in steps]),
                actions=np.stack([step.actions[i] for step in steps]),
                rewards=rewards,
                dones=dones,
                values=values,
                logits=np.stack([sc[i] for sc, _, _ in scored]).astype(np.float32),
                level_seeds=np.array([seeds[i] for _, _, seeds in scored], dtype=np.int64),
                level_complete=np.array([bool(f.get("level_complete", False)) for f in infos]),
                advantages=gae_advantages(rewards, values, dones, last_values[i]),
                states=[step.states[i] for step in steps if step.states] if record_states else None,
                metadata={**metadata, "env_index": i},
            )
        )
    return trajectories
