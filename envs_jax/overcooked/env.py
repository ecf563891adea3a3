"""The gymnax environment class of the reference Overcooked (one ``step`` = one macro action)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

from ..interface import Description
from . import constants as C
from . import game
from .game import EnvParams, EnvState
from .layout import Task, get_task
from .reachable import enumerate_reachable
from .text import TextTable, describe_actions

__all__ = ["Overcooked", "EnvState", "EnvParams"]


class Overcooked(environment.Environment[EnvState, EnvParams]):
    """TWOSOME's Overcooked (map "A", one agent, obs radius 2 by default) as a pure JAX environment.

    ``Overcooked("tomato_salad")`` is the paper's task 0, ``Overcooked("lettuce_tomato_salad")``
    task 3; the other task-3-layout recipes are extensions (see ``layout.TASKS``).

    * ``reset_env(key, params) -> (obs, state)``; the environment has no randomness.
    * ``step_env(key, state, action, params) -> (obs, state, reward, terminated, info)`` runs one
      macro action to completion. ``reward`` is the in-macro discounted sum
      ``sum_k 0.99^k r_k`` (float32). ``terminated`` is the reference ``done`` flag: a correct
      delivery or the 200-primitive-step limit (time-limit ends are terminal in TWOSOME); the
      inherited ``step`` also reports ``truncated = state.time >= max_steps_in_episode`` and
      auto-resets on ``terminated | truncated``.
    * ``info``: ``macro_action_steps`` (int32, the SMDP exponent for GAE), ``prims``
      (int32[MAX_MACRO_PRIMS] primitive actions, padded with -1; the first
      ``macro_action_steps`` are real), ``success`` (this step delivered the correct dish), and
      ``returned_episode`` (= done), ``returned_episode_returns`` (sum_t 0.99^t r_t over the
      episode's primitive steps, the reference ``info["episode"]["r"]``),
      ``returned_episode_lengths`` (primitive steps, ``info["episode"]["l"]``),
      ``returned_episode_macro_lengths`` (macro steps) - the last three are zero unless done.
    * observation: the reference policy vector (reference notes §1) as int32 (18 or 26 entries).

    ``nav``: ``"table"`` (default) looks navigation up in a table built with the reference A*
    for the open room, exact on every reachable state and much faster under ``vmap``;
    ``"astar"`` runs the literal in-graph heap A* on the belief grid at every primitive step.

    ``obs_radius``: how far the agent sees (2 in the TWOSOME runs; 10, i.e. the whole map, is
    what the reference's PPO-baseline script runs with). It changes the observation, the
    agent's memory of item positions and the one macro rule that reads visibility.
    """

    def __init__(self, task: str | Task = "tomato_salad", nav: str = "table", obs_radius: int = C.OBS_RADIUS):
        super().__init__()
        if nav not in ("table", "astar"):
            raise ValueError(f"nav must be 'table' or 'astar', got {nav!r}")
        if isinstance(obs_radius, bool) or not isinstance(obs_radius, int) or obs_radius < 0:
            raise ValueError(f"obs_radius must be a non-negative integer, got {obs_radius!r}")
        task = task if isinstance(task, Task) else get_task(task)
        self.task = dataclasses.replace(task, obs_radius=obs_radius)
        self.layout = self.task.layout
        self.nav = nav

    # gymnax API ---------------------------------------------------------------------------
    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        del key
        state = game.reset_state(self.task)
        return game.policy_obs(self.task, state), state

    def step_env(
        self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams
    ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        del key
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_actions - 1)
        state, reward, done, steps, prims = game.macro_step(self.task, params, state, action, self.nav)
        return self._after_macro(state, reward, done, steps, prims)

    def _after_macro(self, state, reward, done, steps, prims):
        done = jnp.asarray(done, jnp.bool_)
        success = state.success & done
        info = {
            "macro_action_steps": steps,
            "prims": prims,
            "success": success,
            "returned_episode": done,
            "returned_episode_returns": jnp.where(done, state.ep_return, 0.0),
            "returned_episode_lengths": jnp.where(done, state.time, 0),
            "returned_episode_macro_lengths": jnp.where(done, state.macro_time, 0),
        }
        return game.policy_obs(self.task, state), state, reward, done, info

    def step_batch(self, keys: jax.Array, states: EnvState, actions: jax.Array, params: EnvParams | None = None,
                   stages=game.BATCH_STAGES):
        """``jax.vmap(self.step, in_axes=(0, 0, 0, None))``, same results, about twice as fast on
        a CPU: the macro loop runs on a shrinking buffer of the still-running macros
        (:func:`game.macro_step_batch`, which also explains ``stages``) instead of every lane
        until the longest finishes."""
        params = self.default_params if params is None else params
        actions = jnp.clip(jnp.asarray(actions, jnp.int32), 0, self.num_actions - 1)
        macro = game.macro_step_batch(self.task, params, states, actions, self.nav, stages)

        def lane(key, state, reward, done, steps, prims):  # gymnax ``step`` after ``step_env``
            _, key_reset = jax.random.split(key)
            obs_st, state_st, reward, terminated, info = self._after_macro(state, reward, done, steps, prims)
            truncated = self.is_truncated(state_st, params)
            obs_re, state_re = self.reset_env(key_reset, params)
            reset = terminated | truncated
            state = jax.tree.map(lambda r, s: jax.lax.select(reset, r, s), state_re, state_st)
            obs = jax.lax.select(reset, obs_re, obs_st)
            info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
            return obs, state, reward, terminated, truncated, info

        return jax.vmap(lane)(keys, *macro)

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        return game.policy_obs(self.task, state)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.success | (state.time >= params.max_steps_in_episode)

    def is_truncated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    @property
    def name(self) -> str:
        return self.task.env_id

    @property
    def num_actions(self) -> int:
        return self.layout.num_actions

    @property
    def obs_dim(self) -> int:
        return self.layout.obs_dim

    # environment interface (envs_jax.interface) ---------------------------------------------
    deterministic = True  # no randomness anywhere: every greedy episode is the same
    # a macro takes at least one primitive step and episodes end after at most 210 of them
    max_episode_steps = C.MAX_PRIMITIVE_STEPS + C.MAX_MACRO_PRIMS

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.layout.macro_names

    def describe(self, obs) -> Description:
        return describe_actions(np.asarray(obs), self.task)

    def valid_actions(self, obs: jax.Array) -> jax.Array:
        """Every macro action is always offered."""
        return jnp.ones(jnp.shape(obs)[:-1] + (self.num_actions,), jnp.bool_)

    def text_table(self, tokenizer) -> TextTable:
        return TextTable.build(self.task, tokenizer)

    def reachable_observations(self) -> np.ndarray:
        return enumerate_reachable(self.task)["obs"]

    def trace_fields(self, info: dict) -> dict:
        """``macro_action_steps`` and the primitive moves as a digit string (0 right, 1 down,
        2 left, 3 up, 4 stay), as in the reference traces."""
        k = int(info["macro_action_steps"])
        return {"macro_action_steps": k, "prims": "".join(str(int(p)) for p in np.asarray(info["prims"])[:k])}

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0, C.GRID_SIZE, (self.obs_dim,), jnp.int32)

    def state_space(self, params: EnvParams | None = None) -> spaces.Dict:
        nf = self.layout.num_foods
        return spaces.Dict(
            {
                "agent": spaces.Box(0, C.GRID_SIZE - 1, (2,), jnp.int32),
                "food_pos": spaces.Box(0, C.GRID_SIZE - 1, (nf, 2), jnp.int32),
                "food_chop": spaces.Box(0, C.CHOP_DONE, (nf,), jnp.int32),
                "plate_pos": spaces.Box(0, C.GRID_SIZE - 1, (2,), jnp.int32),
                "time": spaces.Discrete(C.MAX_PRIMITIVE_STEPS + C.MAX_MACRO_PRIMS),
            }
        )

    def render(self, state: EnvState, caption: str = ""):
        """RGB uint8 image of one (unbatched) state; see :mod:`envs_jax.overcooked.render`."""
        from .render import render

        return render(state, self.task, caption)

    def __repr__(self) -> str:
        return f"Overcooked({self.task.name!r}, nav={self.nav!r})"
