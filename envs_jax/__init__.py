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


def make(name: str, **kwargs):
    """``(env, default_params)`` for an env id or a task name, like ``gymnax.make``.

    Raises :class:`~envs_jax.registry.UnknownEnvironment` (one line, naming the valid tasks)."""
    env = family_of(name).load()(task_name(name), **kwargs)
    return env, env.default_params


def __getattr__(name: str):
    if name in ("map_blocks", "vmap_blocked"):
        from . import vector

        return getattr(vector, name)
    raise AttributeError(f"module 'envs_jax' has no attribute {name!r}")


__all__ = ["ENV_IDS", "TASK_NAMES", "UnknownEnvironment", "make", "map_blocks", "registered_envs",
           "vmap_blocked"]
