"""Crafter as Craftax-Classic (the ``craftax`` package), behind this project's interface.

Craftax-Classic re-implements Crafter (danijar/crafter) in JAX: the same 64 x 64 worlds, 17
actions, 22 achievements and reward (+1 per newly unlocked achievement, plus 0.1 x the change
of health; Crafter gives a flat +1 when one or more unlock in a step, which differs only on the
rare step that unlocks two). This class wraps its *no-auto-reset* environment and adds what
craftax does not keep: the episode's return (the achievements and the length are in its state).

Resetting is the expensive part: a world costs a few milliseconds to generate, so craftax's
own auto-reset, which generates one for every environment at every step and then selects,
makes a vmapped step cost a world per environment. gymnax's inherited ``step`` does the same
(fine for one environment); :meth:`Crafter.vector` gives a vector of environments that resets
the finished ones from a few fresh worlds only when some have finished (:mod:`.vector`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from craftax.craftax_classic.constants import BlockType
from craftax.craftax_classic.envs.craftax_pixels_env import CraftaxClassicPixelsEnvNoAutoReset
from craftax.craftax_classic.envs.craftax_symbolic_env import CraftaxClassicSymbolicEnvNoAutoReset
from flax import struct
from gymnax.environments import environment, spaces

from . import constants as C

__all__ = ["Crafter", "EnvState"]

OBSERVATIONS = {"crafter": "symbolic", "crafter_pixels": "pixels"}


@struct.dataclass
class EnvState:
    game: Any  # craftax_classic EnvState: map, mobs, inventory, achievements, timestep, ...
    episode_return: jax.Array  # float32[]: the rewards of this episode so far


class Crafter(environment.Environment):
    """Craftax-Classic with symbolic (``"crafter"``) or pixel (``"crafter_pixels"``) observations.

    * ``reset_env(key, params) -> (obs, state)`` generates a world (craftax's ``generate_world``:
      the same world for the same key).
    * ``step_env(key, state, action, params) -> (obs, state, reward, terminated, info)``:
      ``terminated`` is death (health 0 or lava); the time limit (``params.max_timesteps``,
      Crafter's 10,000) is ``truncated`` (gymnax's ``step``, :meth:`step_full`).
    * ``info``: :data:`envs_jax.interface.EPISODE_INFO_KEYS` (``success`` is always False:
      Crafter has no goal; ``returned_episode_lengths`` is the episode's steps) and
      ``returned_episode_achievements``, bool [22] in Crafter's order (``constants.ACHIEVEMENTS``),
      the achievements the episode unlocked; these are zero unless the episode ended here.
      Craftax keeps whether each achievement was unlocked, not how often.
    * observations: symbolic float32 [1345] (the 7 x 9 view's block and mob one-hots, the
      inventory, intrinsics, direction, light, sleep), or pixels float32 [63, 63, 3] in [0, 1].
      The pixel renderer builds its texture cache on first use (about a minute) and craftax writes
      it into its own package directory.
    """

    deterministic = False
    achievements = C.ACHIEVEMENTS
    subgoals = C.SUBGOALS  # RLAdapter's 31

    def __init__(self, task: str = "crafter"):
        super().__init__()
        if task not in OBSERVATIONS:
            raise ValueError(f"unknown Crafter task {task!r}; accepted: {', '.join(OBSERVATIONS)}")
        self._task = task
        self.observation = OBSERVATIONS[task]
        game = {"symbolic": CraftaxClassicSymbolicEnvNoAutoReset, "pixels": CraftaxClassicPixelsEnvNoAutoReset}
        self._game = game[self.observation]()
        self._to_crafter = jnp.asarray(C.CRAFTAX_TO_CRAFTER, jnp.int32)

    # gymnax API ---------------------------------------------------------------------------
    @property
    def default_params(self):
        """craftax_classic ``EnvParams`` (``max_timesteps`` 10,000, day length 300, mob settings)."""
        return self._game.default_params

    def reset_env(self, key: jax.Array, params) -> tuple[jax.Array, EnvState]:
        obs, game = self._game.reset_env(key, params)
        # craftax's reset sets player_direction to a Python int (weakly typed once traced) and
        # its step to an int32 array: without this, a jitted step fed its own output state
        # would compile a second time, and a scan over steps could not carry the state
        game = game.replace(player_direction=jnp.asarray(game.player_direction, jnp.int32))
        return obs, EnvState(game=game, episode_return=jnp.float32(0.0))

    def step_env(self, key: jax.Array, state: EnvState, action, params):
        obs, game, reward, _, _ = self._game.step_env(key, state.game, jnp.asarray(action, jnp.int32), params)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = self.is_terminated(EnvState(game, state.episode_return), params)
        done = terminated | self.is_truncated(EnvState(game, state.episode_return), params)
        episode_return = state.episode_return + reward
        info = {
            "returned_episode": done,
            "returned_episode_returns": jnp.where(done, episode_return, 0.0),
            "returned_episode_lengths": jnp.where(done, game.timestep, 0).astype(jnp.int32),
            "returned_episode_achievements": done & game.achievements[self._to_crafter],
            "success": jnp.bool_(False),
            "macro_action_steps": jnp.int32(1),
        }
        return obs, EnvState(game=game, episode_return=episode_return), reward, terminated, info

    def step_full(self, key: jax.Array, state: EnvState, action, params):
        """``step_env`` plus ``truncated``: ``(obs, state, reward, terminated, truncated, info)``
        without resetting."""
        obs, state, reward, terminated, info = self.step_env(key, state, action, params)
        truncated = self.is_truncated(state, params) & ~terminated
        return obs, state, reward, terminated, truncated, info

    def vector(self, num_envs: int, **options):
        """``num_envs`` environments with optimistic resets (:class:`.vector.OptimisticReset`;
        ``options``: its ``resets_per_step``, ``reset_chunk``)."""
        from .vector import OptimisticReset

        return OptimisticReset(self, num_envs, **options)

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        return self._game.get_obs(state.game)

    def is_terminated(self, state: EnvState, params) -> jax.Array:
        """Death: health 0 or standing in lava (craftax's ``is_game_over`` without the time limit)."""
        game = state.game
        in_lava = game.map[game.player_position[0], game.player_position[1]] == BlockType.LAVA.value
        return in_lava | (game.player_health <= 0)

    def is_truncated(self, state: EnvState, params) -> jax.Array:
        return state.game.timestep >= params.max_timesteps

    @property
    def name(self) -> str:
        from envs_jax.registry import FAMILIES

        return FAMILIES["crafter"].tasks[self._task]

    @property
    def num_actions(self) -> int:
        return len(C.ACTION_NAMES)

    def action_space(self, params=None) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def observation_space(self, params=None) -> spaces.Box:
        space = self._game.observation_space(params)
        return spaces.Box(0.0, 1.0, tuple(space.shape), jnp.float32)

    # environment interface (envs_jax.interface) ---------------------------------------------
    @property
    def task_name(self) -> str:
        return self._task

    @property
    def action_names(self) -> tuple[str, ...]:
        """Crafter's action names (``noop``, ``move_left``, ...), as RLAdapter's history text."""
        return C.ACTION_NAMES

    @property
    def max_episode_steps(self) -> int:
        return int(self.default_params.max_timesteps)

    def episode_metrics(self, episodes_with, episodes) -> dict:
        """``crafter_score``: the Crafter score of the episodes counted (:mod:`.score`)."""
        from .score import crafter_score, rates_from_totals

        return {"crafter_score": crafter_score(rates_from_totals(episodes_with, episodes))}

    def __repr__(self) -> str:
        return f"Crafter({self._task!r})"

    # Instances with the same observations step alike, so they share compiled steps.
    def __hash__(self) -> int:
        return hash((type(self), self._task))

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other._task == self._task

