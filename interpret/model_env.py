"""Which env an interpreter plays a model in: ``--env``/``--env-kwargs``, else the model's own.

Every verb that plays a model takes ``--env ID`` and ``--env-kwargs KEY=VALUE ...``; without
them it uses the env the model was trained on, with that run's options (``view.metadata``, from
the run's config or the zip's metadata), so ``python -m interpret attribute runs/demo`` plays
the demo's easy-mode, velocity-painted CoinRun without repeating its options.
"""

from __future__ import annotations

from typing import Any

from interpret.errors import InterpretError


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
    :raises InterpretError: no env given and none recorded; `envs.EnvSpecError` for a bad id
        or option
    """
    import envs

    sources = [preferred or (None, {})]
    sources.append((view.metadata.get("env_id"), dict(view.metadata.get("env_kwargs") or {})))
    env_id = env or next((source for source, _ in sources if source), None)
    if not env_id:
        raise InterpretError("the model does not record its env; pass --env")
    envs.parse_env_id(env_id)
    if env_kwargs is not None:
        return env_id, envs.parse_options(env_kwargs)
    options = next((dict(opts) for source, opts in sources if source == env_id), {})
    return env_id, options
