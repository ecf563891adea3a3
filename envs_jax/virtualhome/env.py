"""The gymnax environment class of the reference VirtualHome tasks (one step = one script line)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from ..interface import Description
from ..text import EnumeratedText
from . import constants as C
from . import rules
from .reachable import action_table, enumerate_reachable
from .render import render
from .tasks import Task, get_task
from .text import describe

__all__ = ["VirtualHome", "EnvState", "EnvParams"]


@struct.dataclass
class EnvState:
    graph: rules.SceneGraph
    time: jax.Array  # int32[] steps taken in this episode (failed ones included)
    ep_return: jax.Array  # float32[] sum_t 0.95^t r_t (info["episode"]["r"])
    ep_discount: jax.Array  # float32[] 0.95^time


@struct.dataclass
class EnvParams:
    """The episode limit and the discount of the reported return (the reference's)."""

    max_steps_in_episode: int = C.MAX_EPISODE_STEPS
    return_discount: float = C.RETURN_DISCOUNT


class VirtualHome(environment.Environment[EnvState, EnvParams]):
    """TWOSOME's VirtualHome tasks on the reference's graph simulator, as a pure JAX environment.

    ``VirtualHome("food_preparation")`` heats the pancake in the microwave (the reference's
    ``VirtualHome-v1``), ``VirtualHome("entertainment")`` watches TV with chips and milk
    (``VirtualHome-v2``); ``cheese``, ``hamburger``, ``apple_pie``, ``pizza``, ``washing_plate``
    and ``laundry`` are food preparation with the text of POAD's unseen-task variants.

    * ``reset_env(key, params) -> (obs, state)``; the environment has no randomness.
    * ``step_env(key, state, action, params) -> (obs, state, reward, terminated, info)`` runs one
      script line (:mod:`~envs_jax.virtualhome.rules`). Any env action is a legal input: one the
      state does not offer fails or acts by the rules, as in the reference; a failed action leaves
      the scene unchanged and still costs a step. ``reward`` is 1.0 on the step that reaches the
      goal, else 0 (float32). ``terminated`` is the reference's ``done``: the goal, or 50 steps
      (time-limit ends are terminal in TWOSOME); the inherited ``step`` also reports ``truncated``
      at the limit and auto-resets.
    * ``info``: ``succeed`` (the simulator's per-step flag), ``success`` (the episode ends at the
      goal here), ``macro_action_steps`` (1: a decision is one step, so GAE's ``gamma ** steps`` is
      the plain discount), ``returned_episode`` (= terminated), ``returned_episode_returns``
      (sum_t 0.95^t r_t, the reference's ``info["episode"]["r"]``) and
      ``returned_episode_lengths`` (steps) - these two are zero unless the episode ended.
    * observation: the reference's binary vector as int32 (11 or 21 entries, keys in
      ``obs_keys``), computed on what the character sees.
    """

    deterministic = True  # no randomness anywhere: every greedy episode is the same
    max_episode_steps = C.MAX_EPISODE_STEPS

    def __init__(self, task: str | Task = "food_preparation"):
        super().__init__()
        self.task = get_task(task)
        self.mdp = self.task.mdp
        self._actions = jnp.asarray(action_table(self.mdp))

    # gymnax API ---------------------------------------------------------------------------
    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        del key
        state = EnvState(graph=rules.initial_graph(), time=jnp.asarray(0, jnp.int32),
                         ep_return=jnp.asarray(0.0, jnp.float32), ep_discount=jnp.asarray(1.0, jnp.float32))
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: EnvState, action: int | jax.Array, params: EnvParams
                 ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array, dict[str, Any]]:
        del key
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, self.num_actions - 1)
        verb, obj, dest = self._actions[action]
        succeed, graph = rules.execute(state.graph, verb, obj, dest)
        obs = rules.observe(graph, self.mdp.obs)
        success = self.is_goal(obs)
        time = state.time + 1
        done = success | (time >= params.max_steps_in_episode)
        reward = jnp.where(success, C.SUCCESS_REWARD, 0.0).astype(jnp.float32)
        ep_return = state.ep_return + state.ep_discount * reward
        state = EnvState(graph=graph, time=time, ep_return=ep_return,
                         ep_discount=state.ep_discount * jnp.float32(params.return_discount))
        info = {
            "succeed": succeed,
            "success": success,
            "macro_action_steps": jnp.asarray(1, jnp.int32),
            "returned_episode": done,
            "returned_episode_returns": jnp.where(done, ep_return, 0.0),
            "returned_episode_lengths": jnp.where(done, time, 0),
        }
        return obs, state, reward, done, info

    def is_goal(self, obs: jax.Array) -> jax.Array:
        """bool [...]: the observation is the task's goal (reward 1, done; reference notes §2)."""
        return self.mdp.goal(dict(zip(self.mdp.obs_keys, jnp.moveaxis(obs, -1, 0))))

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        return rules.observe(state.graph, self.mdp.obs)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return self.is_goal(self.get_obs(state)) | (state.time >= params.max_steps_in_episode)

    def is_truncated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    @property
    def name(self) -> str:
        return self.task.env_id

    @property
    def num_actions(self) -> int:
        return len(self.mdp.actions)

    @property
    def obs_dim(self) -> int:
        return len(self.mdp.obs)

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(0, 1, (self.obs_dim,), jnp.int32)

    # environment interface (envs_jax.interface) ---------------------------------------------
    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return self.mdp.obs_keys

    @property
    def action_names(self) -> tuple[str, ...]:
        """The script lines without node ids, lower case: ``walk pancake``, ``putin pancake
        microwave`` (variants keep the simulator's names, as their script lines do)."""
        return tuple(" ".join(w.strip("[]<>").lower() for w in a.script.split() if not w.startswith("("))
                     for a in self.mdp.actions)

    @property
    def scripts(self) -> tuple[str, ...]:
        """The reference's script line of each env action (its traces' ``env_action``)."""
        return tuple(a.script for a in self.mdp.actions)

    def describe(self, obs) -> Description:
        return describe(np.asarray(obs), self.task)

    def reachable_observations(self) -> np.ndarray:
        return enumerate_reachable(self.mdp)["obs"]

    def valid_actions(self, obs: jax.Array) -> jax.Array:
        """bool [..., num_actions]: the actions ``describe`` offers, looked up in the table of
        reachable observations (an observation outside it offers none)."""
        table, offered = _offered_actions(self.task)
        obs = jnp.asarray(obs, jnp.int32)
        match = jnp.all(obs[..., None, :] == jnp.asarray(table), axis=-1)  # [..., R]
        row = jnp.argmax(match, axis=-1)
        return jnp.asarray(offered)[row] & jnp.any(match, axis=-1)[..., None]

    def text_table(self, tokenizer) -> EnumeratedText:
        return EnumeratedText.build(self.reachable_observations(), self.describe, self.num_actions, tokenizer)

    def trace_fields(self, info: dict) -> dict:
        """The simulator's ``succeed`` flag of the step, as in the reference traces."""
        return {"succeed": bool(info["succeed"])}

    def render(self, state: EnvState, caption: str = "") -> np.ndarray:
        """RGB uint8 image of one (unbatched) state; see :mod:`envs_jax.virtualhome.render`."""
        return render(state.graph, self.task, caption, int(state.time))

    def __repr__(self) -> str:
        return f"VirtualHome({self.task.name!r})"

    # The text variants of one MDP step alike, so they share compiled steps (gymnax's ``step`` is
    # jitted with ``self`` static).
    def __hash__(self) -> int:
        return hash((type(self), self.mdp))

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.mdp == self.mdp


@functools.lru_cache(maxsize=None)
def _offered_actions(task: Task) -> tuple[np.ndarray, np.ndarray]:
    """The reachable observations and, for each, the actions ``describe`` offers (bool)."""
    obs = enumerate_reachable(task.mdp)["obs"]
    offered = np.zeros((len(obs), len(task.mdp.actions)), bool)
    for i, o in enumerate(obs):
        offered[i, describe(o, task).action_ids] = True
    return obs, offered
