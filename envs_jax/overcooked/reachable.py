"""Enumerate every state / observation reachable from reset (BFS over macro actions).

The environment is deterministic, so breadth-first search over macro actions from the reset
state visits every reachable macro-boundary state. States are deduplicated on everything
that influences the future (positions, holdings, chop counts, memory, the chop-macro counter,
success) and *not* on the step counters, so the result is a superset of what fits into the
200-step limit. States after a correct delivery are recorded but not expanded (the episode
ends there). Each BFS level is one jitted, vmapped call over ``frontier x actions``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import game
from .layout import Task, get_task

_CHUNK = 512
_KEY_FIELDS = (
    "agent", "food_pos", "food_chop", "food_held", "food_in_plate",
    "plate_pos", "plate_held", "mem", "chops", "success",
)


@functools.lru_cache(maxsize=None)
def _batched_step(task: Task):
    params = game.EnvParams()

    @jax.jit
    def step(states, actions):
        def one(s, a):
            s2, r, d, k, _ = game.macro_step(task, params, s, a)
            return s2, game.policy_obs(task, s2), k

        return jax.vmap(one)(states, actions)

    return step


def _keys(states: game.EnvState) -> list[bytes]:
    cols = [np.asarray(getattr(states, f)).reshape(len(states.agent), -1).astype(np.int8)
            for f in _KEY_FIELDS]
    flat = np.concatenate(cols, axis=1)
    return [row.tobytes() for row in flat]


def _take(states, idx):
    return jax.tree.map(lambda x: np.asarray(x)[idx], states)


@functools.lru_cache(maxsize=None)
def enumerate_reachable(task: Task | str) -> dict:
    """BFS from reset. Returns a dict with

    * ``obs``: int32[M, obs_dim], the distinct policy observations (reset and terminal ones
      included), sorted lexicographically;
    * ``states``: every distinct macro-boundary state (an :class:`EnvState` of numpy arrays
      with a leading axis; step counters as first reached);
    * ``num_states``: distinct macro-boundary states; ``num_obs``: ``len(obs)``;
    * ``depth``: BFS depth (macro steps) of the deepest new state;
    * ``max_macro_steps``: the longest macro seen (primitive steps).
    """
    task = get_task(task) if isinstance(task, str) else task
    step = _batched_step(task)
    na = task.layout.num_actions
    s0 = jax.tree.map(np.asarray, game.reset_state(task))
    o0 = np.asarray(game.policy_obs(task, game.reset_state(task)))
    seen = set(_keys(jax.tree.map(lambda x: x[None], s0)))
    all_states = [jax.tree.map(lambda x: x[None], s0)]
    obs_set = {o0.tobytes()}
    frontier = jax.tree.map(lambda x: x[None], s0)
    depth = 0
    max_k = 0
    while len(frontier.agent):
        n = len(frontier.agent)
        rep = jax.tree.map(lambda x: np.repeat(x, na, axis=0), frontier)
        acts = np.tile(np.arange(na, dtype=np.int32), n)
        rep = rep.replace(time=np.zeros_like(rep.time))  # the step counter only sets `done`
        total = n * na
        size = -(-total // _CHUNK) * _CHUNK  # pad to whole chunks: one compilation only
        pad = size - total
        rep = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[:1], pad, axis=0)]), rep)
        acts = np.concatenate([acts, np.zeros(pad, np.int32)])
        outs = [step(_take(rep, slice(j, j + _CHUNK)), jnp.asarray(acts[j:j + _CHUNK]))
                for j in range(0, size, _CHUNK)]
        s2, obs, k = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)
        s2 = jax.tree.map(lambda x: np.asarray(x)[: n * na], s2)
        obs = np.asarray(obs)[: n * na]
        max_k = max(max_k, int(np.asarray(k)[: n * na].max()))
        new_idx = []
        for i, key in enumerate(_keys(s2)):
            obs_set.add(obs[i].tobytes())
            if key not in seen:
                seen.add(key)
                new_idx.append(i)
        if new_idx:
            all_states.append(_take(s2, np.asarray(new_idx)))
        new_idx = [i for i in new_idx if not bool(s2.success[i])]
        if not new_idx:
            break
        depth += 1
        frontier = _take(s2, np.asarray(new_idx))
    dim = task.layout.obs_dim
    obs_arr = np.array(sorted(np.frombuffer(b, np.int32) .tolist() for b in obs_set), np.int32)
    obs_arr = obs_arr.reshape(-1, dim)
    states = jax.tree.map(lambda *xs: np.concatenate(xs), *all_states)
    return {
        "obs": obs_arr,
        "states": states,
        "num_states": len(seen),
        "num_obs": len(obs_arr),
        "depth": depth,
        "max_macro_steps": max_k,
    }
