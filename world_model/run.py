"""A World Models run directory and the pipeline that fills it, stage by stage.

``runs/NAME/``:
  config.json                       every setting (``"algo": "worldmodel"``), the command, shapes
  rollouts/ep_*.npz, rollouts/done.json    stage 1: episodes (see ``world_model.rollouts``)
  vae.safetensors, vae_progress.csv        stage 2: V (a VAE, or with ``vae: gan`` a VAE-GAN)
  series/ep_*.npz, series/initial_z.npy    V's encoding of every episode; first frames' z
  mdn.safetensors, mdn_progress.csv        stage 3: M
  controller_best.safetensors, controller_mean.safetensors, controller_progress.csv,
  cmaes/state.json, cmaes/state.npz        stage 4: C (CMA-ES)
  eval.json                                best and mean controllers on ``eval_episodes`` new seeds
  checkpoints/                             per-epoch V and M checkpoints (for resuming)
A stage whose output exists is skipped; an interrupted one resumes from its last episode,
epoch or generation. ``agents.load(run_dir)`` returns the inspectable view of the agent.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cma
import numpy as np
import torch
from safetensors.numpy import load_file

from agents.executor import Executor
from agents.fileio import atomic_path, read_json, write_json
from world_model import rollouts, training
from world_model.cmaes import EpisodeTask, play_controller, train_controller
from world_model.controller import action_size
from world_model.frames import make_frame_env
from world_model.model import WorldModel, load_weights, space_to_json
from world_model.rundir import CONFIG_FILE, RunError
from world_model.vae_gan import GanWeights

STAGES = ("rollouts", "vae", "mdn", "controller", "eval")
EVAL_SEED_OFFSET = 1_000_000_000  # evaluation tracks/levels, far from the training seeds


@dataclass
class WorldModelConfig:
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    rollouts: int = 32
    rollout_steps: int = 1000
    rollout_policy: str = "auto"
    vae: str = "plain"  # plain | gan (a VAE-GAN: world_model.vae_gan)
    vae_epochs: int = 5
    vae_batch_size: int = 64
    gan_weight: float = 10.0  # --vae gan: the generator's adversarial loss weight
    gan_feature_weight: float = 1.0  # --vae gan: the discriminator-feature error's weight
    kl_tolerance: float = 0.5
    z_size: int = 32
    hidden: int = 256
    n_mix: int = 5
    predict_reward: bool = False
    predict_done: bool = False
    mdn_epochs: int = 10
    mdn_steps: int = 0  # batches per epoch; 0: one pass over the data's windows
    mdn_batch_size: int = 16
    mdn_seq_len: int = 64
    generations: int = 10
    population: int = 8
    rollouts_per_candidate: int = 2
    controller_steps: int = 1000
    sigma0: float = 0.1
    controller_input: str = "zh"  # zh: C reads [z, h]; z: C reads z only (no M)
    train_in: str = "real"
    temperature: float = 1.0
    eval_episodes: int = 20
    eval_steps: int = 1000
    action_space: dict[str, Any] = field(default_factory=dict)
    action_map: str = "auto"  # bounds | carracing (auto: carracing for CarRacing)
    algo: str = "worldmodel"
    command: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cma": cma.__version__}


def create_run(config: WorldModelConfig, run_dir: Path) -> WorldModelConfig:
    """Write a new run's config.json (probing the env for its action space)."""
    env = make_frame_env(config.env_id, config.seed, **config.env_kwargs)
    space = env.action_space
    env.close()
    try:
        action_size(space)
    except ValueError as err:
        raise RunError(f"{config.env_id}: {err}") from None
    config.action_space = space_to_json(space)
    if config.action_map == "auto":
        config.action_map = "carracing" if "CarRacing" in config.env_id else "bounds"
    if config.rollout_policy == "auto":
        config.rollout_policy = rollouts.default_policy(space, config.env_id)
    try:
        rollouts.check_policy(config.rollout_policy, space)
    except ValueError as err:
        raise RunError(f"--rollout-policy: {err}") from None
    config.versions = _versions()
    write_json(run_dir / CONFIG_FILE, asdict(config))
    return config


def run_pipeline(
    config: WorldModelConfig,
    run_dir: Path,
    executor: Executor,
    last_stage: str = "eval",
    log: Any = print,
) -> dict[str, Any]:
    """Run (or resume) every stage up to ``last_stage``; returns a summary of what was done."""
    summary: dict[str, Any] = {}
    stop = STAGES.index(last_stage)
    model = WorldModel.from_config(asdict(config))

    done_file = run_dir / "rollouts" / "done.json"
    if not done_file.is_file():
        started = time.monotonic()
        log(f"rollouts: {config.rollouts} episodes of up to {config.rollout_steps} steps")
        results = rollouts.collect(
            executor,
            config.env_id,
            run_dir / "rollouts",
            config.rollouts,
            config.rollout_steps,
            config.seed,
            config.rollout_policy,
            env_kwargs=config.env_kwargs,
        )
        steps = sum(r["steps"] for r in results)
        seconds = time.monotonic() - started
        write_json(
            done_file,
            {
                "episodes": len(results),
                "steps": steps,
                "mean_return": float(np.mean([r["return"] for r in results])),
                "seconds": round(seconds, 1),
                "frames_per_second": round(steps / max(seconds, 1e-9), 1),
            },
        )
    summary["rollouts"] = read_json(done_file)
    done = summary["rollouts"]
    log(f"rollouts: {done['episodes']} episodes, {done['steps']} steps")
    if stop < STAGES.index("vae"):
        return summary

    if (run_dir / "vae.safetensors").is_file():
        load_weights(model.vae, run_dir / "vae.safetensors")
    else:
        model.vae = training.train_vae(
            run_dir,
            config.vae_epochs,
            config.vae_batch_size,
            kl_tolerance=config.kl_tolerance,
            z_size=config.z_size,
            seed=config.seed,
            log=log,
            gan=_gan_weights(config),
        )
    model.eval()
    if stop < STAGES.index("mdn"):
        return summary

    def encode_actions(actions: np.ndarray) -> np.ndarray:
        return model.controller.encode_action(torch.as_tensor(actions)).numpy()

    files = training.encode_episodes(run_dir, model.vae, encode_actions)
    if not (run_dir / "series" / "initial_z.npy").is_file():
        firsts = [np.load(f)["mu"][0] for f in files]
        with atomic_path(run_dir / "series" / "initial_z.npy", suffix=".npy") as tmp:
            np.save(tmp, np.stack(firsts).astype(np.float32))
    if (run_dir / "mdn.safetensors").is_file():
        load_weights(model.mdn, run_dir / "mdn.safetensors")
    else:
        training.train_mdn(
            run_dir,
            model.mdn,
            config.mdn_epochs,
            config.mdn_steps or None,
            config.mdn_batch_size,
            config.mdn_seq_len,
            seed=config.seed,
            log=log,
        )
    model.eval()
    if stop < STAGES.index("controller"):
        return summary

    summary["controller"] = train_controller(
        run_dir,
        executor,
        model,
        config.generations,
        config.population,
        config.rollouts_per_candidate,
        config.controller_steps,
        config.sigma0,
        config.seed,
        dream=config.train_in == "dream",
        temperature=config.temperature,
        log=log,
    )
    if stop < STAGES.index("eval") or config.eval_episodes == 0:
        return summary
    eval_file = run_dir / "eval.json"
    if not eval_file.is_file() or read_json(eval_file).get("generation") != config.generations:
        summary["eval"] = evaluate_run(config, run_dir, executor, log)
    summary["eval"] = read_json(eval_file)
    return summary


def _gan_weights(config: WorldModelConfig) -> GanWeights | None:
    if config.vae == "plain":
        return None
    return GanWeights(config.gan_weight, config.gan_feature_weight)


def evaluate_run(
    config: WorldModelConfig, run_dir: Path, executor: Executor, log: Any = print
) -> dict[str, Any]:
    """The best candidate and CMA-ES's mean solution, each on the same ``eval_episodes`` unseen
    seeds (real game); writes eval.json. Top-level figures are the best candidate's."""
    seeds = [EVAL_SEED_OFFSET + config.seed + i for i in range(config.eval_episodes)]
    result: dict[str, Any] = {"env_id": config.env_id, "generation": config.generations}
    for name in ("best", "mean"):
        weights = load_file(str(run_dir / f"controller_{name}.safetensors"))
        params = np.concatenate([weights["linear.weight"].ravel(), weights["linear.bias"]])
        started = time.monotonic()
        log(f"eval: {name} controller on {len(seeds)} unseen episodes")
        tasks = [EpisodeTask(str(run_dir), params, s, config.eval_steps) for s in seeds]
        returns = np.asarray(executor.map(play_controller, tasks), float)
        result[name] = {
            "controller": f"controller_{name}.safetensors",
            "episodes": len(returns),
            "mean_return": float(returns.mean()),
            "std_return": float(returns.std()),
            "returns": [round(float(r), 2) for r in returns],
            "seconds": round(time.monotonic() - started, 1),
        }
    result.update({k: result["best"][k] for k in ("episodes", "mean_return", "std_return")})
    result.update(seeds=f"{seeds[0]}..{seeds[-1]}", max_steps=config.eval_steps)
    write_json(run_dir / "eval.json", result)
    return result
