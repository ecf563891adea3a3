"""A vector of Crafter environments with optimistic resets.

Generating a Craftax-Classic world costs a few milliseconds on a CPU, far more than a step, and
a vmapped reset of many worlds at once gets slower per world past a few dozen (docs of this
family in ``envs_jax/README.md``). So:

* the first worlds are generated ``reset_chunk`` (64) at a time (``lax.map`` over chunks, through
  :func:`envs_jax.vector.vmap_blocked`);
* at each step, only when some environment's episode has ended (``lax.cond``: a step where none
  ended pays nothing), ``resets_per_step`` fresh worlds are generated and handed to the
  environments that finished, the k-th finished one (in index order) taking world
  ``k mod resets_per_step``. More finished environments than fresh worlds in one step share a
  world (the "optimistic" part, as in Craftax's ``OptimisticResetVecEnvWrapper``); their
  episodes then diverge by the game's own randomness.

Environment ``i`` of :meth:`OptimisticReset.reset` is craftax's world for
``jax.random.split(key, num_envs)[i]``; the fresh worlds of a step are those of
``jax.random.split(reset_key, resets_per_step)``, with ``reset_key`` the second half of
``jax.random.split(key)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from envs_jax.vector import vmap_blocked

RESET_CHUNK = 64  # worlds generated per vmapped call (cost per world rises past this on CPU)


@dataclasses.dataclass(frozen=True)
class OptimisticReset:
    """``num_envs`` copies of ``env`` (a :class:`~envs_jax.crafter.env.Crafter`); see the module
    docstring. ``resets_per_step`` defaults to ``ceil(num_envs / 16)``; ``reset_chunk`` is the
    number of first worlds generated per vmapped call. Equal vectors (same env, sizes) compare
    and hash equal, so jitted functions taking one as a static argument share compilations."""

    env: Any
    num_envs: int
    resets_per_step: int | None = None
    reset_chunk: int = RESET_CHUNK

    def __post_init__(self):
        if isinstance(self.num_envs, bool) or not isinstance(self.num_envs, int) or self.num_envs < 1:
            raise ValueError(f"num_envs={self.num_envs!r} is invalid; accepted: an integer >= 1")
        if self.resets_per_step is None:
            object.__setattr__(self, "resets_per_step", -(-self.num_envs // 16))
        r = self.resets_per_step
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= self.num_envs:
            raise ValueError(f"resets_per_step={r!r} is invalid; accepted: an integer in 1..num_envs={self.num_envs}")

    def reset(self, key: jax.Array, params):
        """``(obs [N, ...], state [N])``: world ``i`` from ``jax.random.split(key, N)[i]``."""
        keys = jax.random.split(key, self.num_envs)
        return vmap_blocked(self.env.reset_env, (0, None), self.reset_chunk)(keys, params)

    def step(self, key: jax.Array, state, action: jax.Array, params):
        """One step of every environment; ``(obs, state, reward, terminated, truncated, info)``.

        A finished environment's ``obs``/``state`` are already its next episode's first ones;
        ``info["final_observation"]`` is the observation the episode ended on (the step's own
        observation elsewhere), for bootstrapping at the time limit."""
        key_step, key_reset = jax.random.split(key)
        keys = jax.random.split(key_step, self.num_envs)
        obs, state, reward, terminated, truncated, info = jax.vmap(
            self.env.step_full, in_axes=(0, 0, 0, None))(keys, state, action, params)
        done = terminated | truncated
        info = {**info, "final_observation": obs}

        def fresh(carry):
            obs, state = carry
            new_obs, new_state = jax.vmap(self.env.reset_env, in_axes=(0, None))(
                jax.random.split(key_reset, self.resets_per_step), params)
            slot = (jnp.cumsum(done) - 1) % self.resets_per_step

            def pick(new, old):
                where = done.reshape(done.shape + (1,) * (old.ndim - 1))
                return jnp.where(where, new[slot], old)

            return jax.tree.map(pick, new_obs, obs), jax.tree.map(pick, new_state, state)

        obs, state = jax.lax.cond(jnp.any(done), fresh, lambda carry: carry, (obs, state))
        return obs, state, reward, terminated, truncated, info
