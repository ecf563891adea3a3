"""Every scene graph reachable from reset, by breadth-first search over all env actions.

The simulator is deterministic, so BFS from the reset graph under every env action (offered or
not, failed ones included) visits every graph an episode can reach. Graphs are compared on all
their fields; the step counter is not part of them, so the result holds for any episode length.
Graphs after the goal are expanded too (as the reference's state machines are), which is why a
terminal-only observation (food preparation: the pancake in the closed microwave, the agent not
close to it) is among the observations. Each BFS level runs the frontier through one jitted,
vmapped call over its (graph, action) pairs, in padded chunks of a fixed size (one compilation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import rules
from .tasks import MDP, get_task

_CHUNK = 64  # graphs per call


def action_table(mdp: MDP) -> np.ndarray:
    """int32[A, 3]: (verb, object row, destination row) of each env action."""
    return np.array([(a.verb, a.obj, a.dest) for a in mdp.actions], np.int32)


@functools.lru_cache(maxsize=None)
def _expand(mdp: MDP):
    """jit: graphs [G] -> (ok [G, A], graphs after [G, A], observations [G, A, D])."""
    table = jnp.asarray(action_table(mdp))
    a = len(mdp.actions)

    def act(g, row):
        ok, after = rules.execute(g, row[0], row[1], row[2])
        return ok, after, rules.observe(after, mdp.obs)

    @jax.jit
    def expand(graphs):
        g = jax.tree.map(lambda x: jnp.repeat(x, a, axis=0), graphs)  # one vmap over (graph, action)
        out = jax.vmap(act)(g, jnp.tile(table, (len(graphs.sitting), 1)))
        return jax.tree.map(lambda x: x.reshape((-1, a) + x.shape[1:]), out)

    return expand


def _run_chunked(expand, graphs):
    """``expand(graphs)`` as numpy, padding the batch to a multiple of ``_CHUNK``."""
    n = len(graphs.sitting)
    pad = -n % _CHUNK
    padded = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[:1], pad, 0)]), graphs)
    outs = [jax.tree.map(np.asarray, expand(jax.tree.map(lambda x: x[i:i + _CHUNK], padded)))
            for i in range(0, n + pad, _CHUNK)]
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


def _keys(graphs: rules.SceneGraph) -> list[bytes]:
    leaves = [np.asarray(x).reshape(np.shape(x)[0], -1) for x in jax.tree.leaves(graphs)]
    flat = np.packbits(np.concatenate(leaves, axis=1).astype(bool), axis=1)
    return [row.tobytes() for row in flat]


@functools.lru_cache(maxsize=None)
def enumerate_reachable(mdp: MDP | str) -> dict:
    """BFS from reset over the graphs of a task's MDP (a task name selects its MDP). Returns

    * ``graphs``: the reachable :class:`~rules.SceneGraph` s stacked (numpy), reset first;
    * ``state_obs``: int32[S, obs_dim], the observation of each;
    * ``next``: int32[S, A], the graph index after each env action; ``ok``: bool[S, A], its
      succeed flag;
    * ``obs``: the distinct observations, int32[M, obs_dim], sorted.

    Host side (numpy) even when first asked for under a trace, so the cache holds no tracer.
    """
    with jax.ensure_compile_time_eval():
        return _bfs(get_task(mdp).mdp if isinstance(mdp, str) else mdp)


def _bfs(mdp: MDP) -> dict:
    expand = _expand(mdp)
    g0 = jax.tree.map(lambda x: np.asarray(x)[None], rules.initial_graph())
    index = {_keys(g0)[0]: 0}
    graphs = [g0]
    state_obs = [np.asarray(rules.observe(rules.initial_graph(), mdp.obs))[None]]
    nxt, oks = [], []
    frontier = g0
    while True:
        ok, after, obs = _run_chunked(expand, frontier)
        n, a = ok.shape
        flat = jax.tree.map(lambda x: x.reshape((n * a,) + x.shape[2:]), after)
        new_rows = []
        ids = np.empty(n * a, np.int64)
        for k, key in enumerate(_keys(flat)):
            if key not in index:
                index[key] = len(index)
                new_rows.append(k)
            ids[k] = index[key]
        nxt.append(ids.reshape(n, a))
        oks.append(ok)
        if not new_rows:
            break
        frontier = jax.tree.map(lambda x: x[np.array(new_rows)], flat)
        graphs.append(frontier)
        state_obs.append(obs.reshape(n * a, -1)[np.array(new_rows)])
    all_graphs = jax.tree.map(lambda *xs: np.concatenate(xs), *graphs)
    state_obs = np.concatenate(state_obs).astype(np.int32)
    return {
        "graphs": all_graphs,
        "state_obs": state_obs,
        "next": np.concatenate(nxt).astype(np.int32),
        "ok": np.concatenate(oks),
        "obs": np.unique(state_obs, axis=0),
    }
