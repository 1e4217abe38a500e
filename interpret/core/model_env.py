"""Which env an interpreter plays a model in: ``--env``/``--env-kwargs``, else the model's own.

Every verb that plays a model takes ``--env ID`` and ``--env-kwargs KEY=VALUE ...``; without
them it uses the env the model was trained on, with that run's options (``view.metadata``, from
the run's config or the zip's metadata), so ``python -m interpret attribute runs/demo`` plays
the demo's easy-mode, velocity-painted CoinRun without repeating its options. Either way the
env is checked against the model (`check_fits`: observation shape, action space), so a Pong
model is refused on CoinRun in one line, before anything is played.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interpret.core.errors import InterpretError

if TYPE_CHECKING:
    from agents.policy_view import PolicyView


def resolve_env(
    view: Any,
    env: str | None,
    env_kwargs: list[str] | None,
    preferred: tuple[str | None, dict[str, Any]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """(env id, options) for playing `view`.

    :param env: ``--env`` (None: the preferred source's env, else the model's)
    :param env_kwargs: ``--env-kwargs`` as ``KEY=VALUE`` strings (None: the options recorded
        with that env id by the preferred source or the model; an env neither records: none)
    :param preferred: (env id, options) of a source consulted before the model (e.g. the
        attribution report an edit reads)
    :raises InterpretError: no env given and none recorded, or the model does not fit the env;
        `envs.EnvSpecError` for a bad id or option
    """
    import envs

    sources = [preferred or (None, {})]
    sources.append((view.metadata.get("env_id"), dict(view.metadata.get("env_kwargs") or {})))
    env_id = env or next((source for source, _ in sources if source), None)
    if not env_id:
        raise InterpretError("the model does not record its env; pass --env")
    envs.parse_env_id(env_id)
    if env_kwargs is not None:
        options = envs.parse_options(env_kwargs)
    else:
        options = next((dict(opts) for source, opts in sources if source == env_id), {})
    check_fits(view, env_id, options)
    return env_id, options


def check_fits(view: PolicyView, env_id: str, options: dict[str, Any]) -> None:
    """`InterpretError` unless `view` can play `env_id`: the env's observations have the
    policy's shape (or its channels-first transpose) and its action space is the policy's.
    A World Models agent resizes any frame, so only its actions are compared. Builds the env
    once (bad options fail here too, as `envs.EnvSpecError`)."""
    import envs

    env = envs.make_env(env_id, 0, **options)
    try:
        obs_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    problems = []
    got = tuple(obs_space.shape or ())
    if not view.accepts_observations(got):
        want = tuple(view.observation_space.shape or ())
        problems.append(f"observations of shape {got} (the model's: {want})")
    if _describe(action_space) != _describe(view.action_space):
        problems.append(f"{_describe(action_space)} (the model's: {_describe(view.action_space)})")
    if problems:
        trained = view.metadata.get("env_id")
        hint = f"it was trained on {trained}" if trained else "pass the --env it was trained on"
        raise InterpretError(f"the model does not fit {env_id}: {'; '.join(problems)}; {hint}")


def _describe(space: Any) -> str:
    n = getattr(space, "n", None)
    if n is not None and not hasattr(space, "nvec"):
        return f"{int(n)} discrete actions"
    return f"actions {type(space).__name__}{tuple(getattr(space, 'shape', ()) or ())}"
