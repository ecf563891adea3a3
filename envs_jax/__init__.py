"""JAX-native environments for LLM agents, gymnax style.

``env, params = envs_jax.make("Overcooked-TomatoSalad-v0")`` (or a task name such as
``"tomato_salad"``). Every family implements :mod:`envs_jax.interface`; the tasks and env ids
are listed in :mod:`envs_jax.registry` (``envs_jax.registered_envs()``). For thousands of
environments on a CPU, ``envs_jax.map_blocks(env.step_batch, in_axes=(0, 0, 0, None))`` is the
fastest equivalent of ``jax.vmap(env.step, in_axes=(0, 0, 0, None))`` for Overcooked.

Importing this package imports neither JAX nor any family: ``make`` and the vector helpers
load them on first use, so the registry can be read by commands that have not imported JAX.
"""

from __future__ import annotations

from .registry import ENV_IDS, TASK_NAMES, UnknownEnvironment, family_of, task_name


def registered_envs() -> tuple[str, ...]:
    """Every registered env id (task names are accepted by :func:`make` too)."""
    return tuple(ENV_IDS)


def make(name: str, **options):
    """``(env, params)`` for an env id or a task name, like ``gymnax.make``.

    ``options`` are keywords of the family's constructor (e.g. Overcooked's ``obs_radius``) or
    fields of its params, which replace the defaults (e.g. ``reward_subtask``). Raises
    :class:`~envs_jax.registry.UnknownEnvironment` (one line), naming the valid tasks for an
    unknown name, or the options the family has for an option it does not have."""
    import dataclasses
    import inspect

    cls = family_of(name).load()
    keywords = list(inspect.signature(cls.__init__).parameters)[2:]  # after self and the task
    env = cls(task_name(name), **{k: v for k, v in options.items() if k in keywords})
    params = env.default_params
    fields = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    rest = {k: v for k, v in options.items() if k not in keywords}
    unknown = sorted(set(rest) - set(fields))
    if unknown:
        raise UnknownEnvironment(f"environment {name!r} has no option {unknown[0]!r}; accepted: "
                         f"{', '.join(keywords + list(fields))}")
    return env, params.replace(**{k: type(fields[k])(v) for k, v in rest.items()})


def __getattr__(name: str):
    if name in ("map_blocks", "vmap_blocked"):
        from . import vector

        return getattr(vector, name)
    raise AttributeError(f"module 'envs_jax' has no attribute {name!r}")


__all__ = ["ENV_IDS", "TASK_NAMES", "UnknownEnvironment", "make", "map_blocks", "registered_envs",
           "vmap_blocked"]
