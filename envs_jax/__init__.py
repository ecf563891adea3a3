"""JAX-native environments of TWOSOME, gymnax style.

``env, params = envs_jax.make("Overcooked-TomatoSalad-v0")`` (or a task name such as
``"tomato_salad"``). Registered ids: see ``envs_jax.registered_envs()``. For thousands of
environments on a CPU, ``envs_jax.map_blocks(env.step_batch, in_axes=(0, 0, 0, None))`` is the
fastest equivalent of ``jax.vmap(env.step, in_axes=(0, 0, 0, None))``.
"""

from __future__ import annotations

from .overcooked.layout import ENV_IDS, TASK_NAMES
from .vector import map_blocks, vmap_blocked


def registered_envs() -> tuple[str, ...]:
    """Every registered env id (task names are accepted by :func:`make` too)."""
    return tuple(ENV_IDS)


def make(name: str, **kwargs):
    """``(env, default_params)`` for an env id or a task name, like ``gymnax.make``."""
    from .overcooked.env import Overcooked

    if name in ENV_IDS or name in TASK_NAMES:
        env = Overcooked(name, **kwargs)
        return env, env.default_params
    raise ValueError(
        f"unknown environment {name!r}; valid: {', '.join(ENV_IDS)} "
        f"(or task names {', '.join(TASK_NAMES)})"
    )


__all__ = ["make", "map_blocks", "registered_envs", "vmap_blocked"]
