"""The JAX Overcooked against the reference golden traces, plus property tests."""

from __future__ import annotations

import functools
import gzip
import json
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax.overcooked import constants as C
from envs_jax.overcooked import game
from envs_jax.overcooked.env import Overcooked
from envs_jax.overcooked.layout import TASK_NAMES, get_task
from envs_jax.overcooked.reachable import enumerate_reachable
from envs_jax.overcooked.text import describe

DATA = Path(__file__).parent / "data"
GOLDEN_TASKS = ("tomato_salad", "lettuce_tomato_salad")
KEY = jax.random.PRNGKey(0)


@lru_cache(maxsize=None)
def golden(task: str) -> list[dict]:
    with gzip.open(DATA / f"overcooked_{task}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


@lru_cache(maxsize=None)
def replay(task: str, nav: str):
    """All golden episodes of a task, batched: vmap over episodes, scan over padded actions."""
    env = Overcooked(task, nav=nav)
    params = env.default_params
    eps = golden(task)
    horizon = max(len(e["steps"]) for e in eps)
    acts = np.zeros((len(eps), horizon), np.int32)
    for i, e in enumerate(eps):
        acts[i, : len(e["steps"])] = [s["action"] for s in e["steps"]]

    def one(actions):
        obs0, s = env.reset_env(KEY, params)

        def body(s, a):
            obs, s, r, done, info = env.step_env(KEY, s, a, params)
            return s, (obs, r, done, info)

        _, out = jax.lax.scan(body, s, actions)
        return obs0, out

    obs0, (obs, rew, done, info) = jax.jit(jax.vmap(one))(jnp.asarray(acts))
    return eps, jax.tree.map(np.asarray, (obs0, obs, rew, done, info))


@lru_cache(maxsize=None)
def single_step(task: str):
    """jit(step_env) of one unbatched env (shared by several tests: one compilation)."""
    env, params = envs_jax.make(task)
    return env, params, jax.jit(env.step_env)


@pytest.mark.parametrize("task", GOLDEN_TASKS)
def test_golden_replay(task):
    """Default (table) navigation; test_navigation_table_equals_astar_on_reachable_states
    extends the result to the literal A* (every golden state is a reachable state)."""
    eps, (obs0, obs, rew, done, info) = replay(task, "table")
    assert len(eps) == 58
    steps_checked = 0
    for i, e in enumerate(eps):
        prev = obs0[i]
        for t, s in enumerate(e["steps"]):
            where = f"{task} episode {i} step {t} ({s['action_name']})"
            assert prev.tolist() == s["obs"], where
            assert describe(prev, task) == (s["prompt"], s["actions"]), where
            k = int(info["macro_action_steps"][i, t])
            assert k == s["macro_action_steps"], where
            prims = info["prims"][i, t]
            assert "".join(map(str, prims[:k])) == s["prims"], where
            assert (prims[k:] == -1).all(), where
            assert abs(float(rew[i, t]) - s["reward"]) <= 1e-6, where
            assert bool(done[i, t]) == s["done"], where
            assert not bool(done[i, t]) or t == len(e["steps"]) - 1, where
            if "episode_info" in s:  # info["episode"] of the reference, on the last step
                assert bool(info["returned_episode"][i, t])
                assert int(info["returned_episode_lengths"][i, t]) == s["episode_info"]["l"]
                assert abs(float(info["returned_episode_returns"][i, t]) - s["episode_info"]["r"]) < 1e-5
                assert int(info["returned_episode_macro_lengths"][i, t]) == len(e["steps"])
                assert bool(info["success"][i, t]) == e["success"], where
            else:
                assert not bool(info["success"][i, t])
            prev = obs[i, t]
            steps_checked += 1
        assert prev.tolist() == e["final"]["obs"]
        assert describe(prev, task) == (e["final"]["prompt"], e["final"]["actions"])
        assert s["done"]
    assert steps_checked == sum(len(e["steps"]) for e in eps)


def test_reset_observations_and_spec_examples():
    env0, p0 = envs_jax.make("Overcooked-TomatoSalad-v0")
    obs, _ = env0.reset(KEY, p0)
    assert obs.dtype == jnp.int32
    assert obs.tolist() == [0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 4, 1, 0, 0, 0, 0, 0, 0]
    env3, p3 = envs_jax.make("lettuce_tomato_salad")
    obs, _ = env3.reset(KEY, p3)
    assert obs.tolist() == [0, 5, 0, 1, 6, 0, 2, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 4,
                            0, 0, 0, 1, 0, 0, 0]
    # the optimal task-0 episode (reference notes §1)
    env0, p0, step = single_step("tomato_salad")
    _, s = env0.reset(KEY, p0)
    want = [("03", -0.00199), ("22222", -0.00490099501), ("222", 0.19304990000000002),
            ("2", -0.001), ("1111000011", -0.009561792499119549), ("3322222", 0.9346866841916989)]
    for a, (prims, r) in zip([0, 2, 4, 0, 1, 3], want):
        obs, s, rew, done, info = step(KEY, s, a, p0)
        k = int(info["macro_action_steps"])
        assert "".join(map(str, np.asarray(info["prims"][:k]))) == prims
        assert abs(float(rew) - r) < 1e-6
    assert bool(done) and bool(info["success"]) and int(s.time) == 28


def test_registry_and_errors():
    overcooked_ids = [i for i in envs_jax.registered_envs() if i.startswith("Overcooked-")]
    assert len(overcooked_ids) == 7
    for env_id in overcooked_ids:
        env, params = envs_jax.make(env_id)
        assert env.name == env_id
        assert env.num_actions == (5 if env_id == "Overcooked-TomatoSalad-v0" else 8)
    for name in TASK_NAMES:
        env, _ = envs_jax.make(name)
        assert env.task.name == name
        assert env.obs_dim == (18 if name == "tomato_salad" else 26)
    with pytest.raises(ValueError, match="valid tasks: tomato_salad, lettuce_tomato_salad"):
        envs_jax.make("Overcooked-Pizza-v0")
    with pytest.raises(ValueError, match="nav"):
        Overcooked("tomato_salad", nav="dijkstra")


def test_recipe_one_hot_and_correct_dish():
    for name in TASK_NAMES:
        task = get_task(name)
        env, params = envs_jax.make(name)
        obs, _ = env.reset(KEY, params)
        onehot = np.asarray(obs[-7:])
        assert onehot.tolist() == [int(i == task.recipe_index) for i in range(7)]
        # every recipe can be served: BFS reaches a correct delivery
        r = enumerate_reachable(name)
        assert r["states"].success.any(), name
        # ... and the plate of every success state holds exactly the recipe's foods
        ok = r["states"].success
        assert (r["states"].food_in_plate[ok] == np.asarray(task.recipe_mask)).all()


def test_auto_reset_in_step():
    env, params = envs_jax.make("tomato_salad")
    obs0, s = env.reset(KEY, params)
    for a in [0, 2, 4, 0, 1]:
        obs, s, r, term, trunc, info = env.step(KEY, s, a, params)
        assert not bool(term)
    obs, s, r, term, trunc, info = env.step(KEY, s, 3, params)
    assert bool(term) and not bool(trunc) and bool(info["success"])
    assert obs.tolist() == obs0.tolist()  # auto-reset
    assert info["final_observation"].tolist() != obs0.tolist()
    assert int(s.time) == 0


def test_time_limit_lets_the_macro_finish():
    env, params, step = single_step("tomato_salad")
    _, s = env.reset(KEY, params)
    t_prev, done = 0, False
    while not done:
        _, s, r, done, info = step(KEY, s, 1, params)  # walk back and forth to the plate
        if t_prev < 200 <= int(s.time):
            break
        assert not bool(done)
        t_prev = int(s.time)
    assert bool(done) and 200 <= int(s.time) < 200 + C.MAX_MACRO_PRIMS
    assert bool(env.is_truncated(s, params))


def test_navigation_table_equals_astar_on_reachable_states():
    """The default table navigation == the literal in-graph A*, on every reachable state and
    macro action (so the two modes give identical trajectories from reset)."""
    for name in GOLDEN_TASKS:
        task = get_task(name)
        states = enumerate_reachable(name)["states"]
        na = task.layout.num_actions
        n = len(states.agent)
        rep = jax.tree.map(lambda x: jnp.asarray(np.repeat(x, na, axis=0)), states)
        acts = jnp.tile(jnp.arange(na, dtype=jnp.int32), n)
        params = game.EnvParams()
        outs = {}
        for nav in ("table", "astar"):
            f = jax.jit(jax.vmap(lambda s, a, nav=nav: game.macro_step(task, params, s, a, nav)))
            outs[nav] = jax.tree.map(np.asarray, f(rep, acts))
        flat_t, flat_a = jax.tree.leaves(outs["table"]), jax.tree.leaves(outs["astar"])
        for x, y in zip(flat_t, flat_a):
            np.testing.assert_array_equal(x, y)


def test_in_graph_astar_equals_cpython_heapq():
    """navigate() (fixed-size heap arrays) == heapq with the `f <=` predicate, on random
    belief grids (random obstacles, also on interior cells; random agent and target)."""
    rng = np.random.default_rng(0)
    n = 400
    beliefs = np.zeros((n, 7, 7), np.int32)
    agents = np.zeros((n, 2), np.int32)
    targets = np.zeros((n, 2), np.int32)
    for i in range(n):
        b = np.where(rng.random((7, 7)) < rng.uniform(0.0, 0.5), C.COUNTER, C.SPACE)
        if i % 4 == 0:  # the real room: counters all around
            b[0, :] = b[-1, :] = b[:, 0] = b[:, -1] = C.COUNTER
        a = rng.integers(1, 6, 2)
        b[a[0], a[1]] = C.AGENT
        beliefs[i], agents[i], targets[i] = b, a, rng.integers(0, 7, 2)
    got = np.asarray(jax.jit(jax.vmap(game.navigate))(jnp.asarray(beliefs), jnp.asarray(agents),
                                                     jnp.asarray(targets)))
    want = np.array([game.navigate_py(b, a, t) for b, a, t in zip(beliefs, agents, targets)])
    np.testing.assert_array_equal(got, want)
    # strict `<` would give other paths: the tie-breaking is exercised
    assert len(set(want.tolist())) == 5


def _check_invariants(task, s, where=""):
    """Validity of a batch of macro-boundary states (numpy EnvState with a leading axis)."""
    lay = task.layout
    nf = lay.num_foods
    agent = s.agent
    assert ((agent >= 1) & (agent <= 5)).all(), where  # the agent stays on the floor
    # one plate, at most one thing in hand
    held = s.food_held.sum(1) + s.plate_held
    assert (held <= 1).all(), where
    assert not (s.food_held & s.food_in_plate).any(), where
    assert ((s.food_chop == 0) | (s.food_chop == C.CHOP_DONE)).all(), where  # chops come in 3s
    assert (s.chops == 0).all(), where
    assert (s.mem == np.concatenate([s.food_pos, s.plate_pos[:, None]], 1)).all(), where
    knives = np.asarray(lay.knives)
    for f in range(nf):
        pos = s.food_pos[:, f]
        held_f, in_plate = s.food_held[:, f], s.food_in_plate[:, f]
        loose = ~held_f & ~in_plate
        at_spawn = (pos == np.asarray(lay.food_spawn[f])).all(1)
        on_knife = (pos[:, None] == knives[None]).all(2).any(1)
        assert (loose <= (at_spawn | on_knife)).all(), where
        assert (held_f <= (pos == agent).all(1)).all(), where
        assert (in_plate <= (pos == s.plate_pos).all(1)).all(), where
        assert (in_plate <= (s.food_chop[:, f] == C.CHOP_DONE)).all(), where
        assert (~at_spawn | loose | held_f | in_plate).all(), where
    plate = s.plate_pos
    on_knife = (plate[:, None] == knives[None]).all(2).any(1)
    at_spawn = (plate == np.asarray(lay.plate_spawn)).all(1)
    on_delivery = (plate == np.asarray(lay.delivery)).all(1)
    assert (s.plate_held <= (plate == agent).all(1)).all(), where
    assert (s.plate_held | on_knife | at_spawn | (on_delivery & s.success)).all(), where
    # no two loose items share a cell
    items = np.concatenate([s.food_pos, plate[:, None]], 1)
    loose = np.concatenate([~s.food_held & ~s.food_in_plate, ~s.plate_held[:, None]], 1)
    for i in range(nf + 1):
        for j in range(i + 1, nf + 1):
            same = (items[:, i] == items[:, j]).all(1) & loose[:, i] & loose[:, j]
            assert not same.any(), where


@pytest.mark.parametrize("task_name", ["tomato_salad", "lettuce_tomato_salad",
                                       "lettuce_onion_tomato_salad"])
def test_random_macro_sequences_keep_state_valid(task_name):
    env = Overcooked(task_name)
    params = env.default_params
    n, steps = 1024, 120
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    _, s = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    @jax.jit
    def run(key, s):
        def body(carry, _):
            key, s = carry
            key, ka, ks = jax.random.split(key, 3)
            a = jax.random.randint(ka, (n,), 0, env.num_actions)
            obs, s, r, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(ks, n), s, a, params)
            return (key, s), (s, info["macro_action_steps"], r, term | trunc)
        _, out = jax.lax.scan(body, (key, s), None, length=steps)
        return out

    states, k, r, done = jax.tree.map(np.asarray, run(jax.random.PRNGKey(2), s))
    assert ((k >= 1) & (k <= 10)).all()
    assert done.any()
    assert (r <= 1.0).all() and (r > -0.2).all()
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), states)
    _check_invariants(env.task, flat, task_name)


@pytest.mark.parametrize("task_name", GOLDEN_TASKS)
def test_reachable_states_are_valid(task_name):
    r = enumerate_reachable(task_name)
    _check_invariants(get_task(task_name), r["states"], task_name)
    assert r["max_macro_steps"] == 10
    assert r["num_obs"] == {"tomato_salad": 22, "lettuce_tomato_salad": 806}[task_name]


def test_vmap_equals_per_env_steps():
    """vmap over 1024 envs == each env stepped alone (jitted, unbatched)."""
    env, params, single = single_step("lettuce_tomato_salad")
    n = 1024
    rng = np.random.default_rng(3)
    # diverse start states: 1024 reachable states, then two random macro actions each
    states = enumerate_reachable("lettuce_tomato_salad")["states"]
    idx = rng.integers(0, len(states.agent), n)
    s = jax.tree.map(lambda x: jnp.asarray(x[idx]), states)
    s = s.replace(time=jnp.asarray(rng.integers(0, 200, n), jnp.int32))
    batched = jax.jit(jax.vmap(env.step_env, in_axes=(None, 0, 0, None)))
    for _ in range(2):
        a = rng.integers(0, env.num_actions, n).astype(np.int32)
        out_b = jax.tree.map(np.asarray, batched(KEY, s, jnp.asarray(a), params))
        s_np = jax.tree.map(np.asarray, s)
        for i in range(n):
            out_i = single(KEY, jax.tree.map(lambda x: x[i], s_np), a[i], params)
            for x, y in zip(jax.tree.leaves(out_i), jax.tree.leaves(out_b)):
                np.testing.assert_array_equal(np.asarray(x), y[i])
        s = jax.tree.map(jnp.asarray, out_b[1])


def test_vmap_blocked_equals_vmap():
    """Blocks of 384 (and a remainder of 232) == one vmap over 1000 envs, auto-reset included."""
    import envs_jax

    env, params = envs_jax.make("lettuce_tomato_salad")
    n = 1000
    rng = np.random.default_rng(5)
    states = enumerate_reachable("lettuce_tomato_salad")["states"]
    s = jax.tree.map(lambda x: jnp.asarray(x[rng.integers(0, len(states.agent), n)]), states)
    s = s.replace(time=jnp.asarray(rng.integers(150, 200, n), jnp.int32))  # some episodes end
    keys = jax.random.split(KEY, n)
    a = jnp.asarray(rng.integers(0, env.num_actions, n), jnp.int32)
    want = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))(keys, s, a, params)
    got = jax.jit(envs_jax.vmap_blocked(env.step, in_axes=(0, 0, 0, None), block_size=384))(keys, s, a, params)
    assert bool(np.any(np.asarray(want[3]) | np.asarray(want[4])))  # the episode-end path is exercised
    for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="in_axes must be 0 or None"):
        envs_jax.vmap_blocked(env.step, in_axes=(0, 1, 0, None))(keys, s, a, params)


@pytest.mark.parametrize("stages", [None, ((2, 1), (64, 2))], ids=["default", "overflowing"])
def test_step_batch_equals_vmap(stages):
    """The compacted batch step == vmap(env.step) over 1000 diverse envs, auto-reset included;
    tiny buffers (1/2 then 1/64 of the batch) force the overflow path."""
    import envs_jax

    env, params = envs_jax.make("lettuce_tomato_salad")
    n = 1000
    rng = np.random.default_rng(7)
    states = enumerate_reachable("lettuce_tomato_salad")["states"]
    s = jax.tree.map(lambda x: jnp.asarray(x[rng.integers(0, len(states.agent), n)]), states)
    s = s.replace(time=jnp.asarray(rng.integers(150, 200, n), jnp.int32))
    want_fn = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    got_fn = jax.jit(functools.partial(env.step_batch, **({} if stages is None else {"stages": stages})))
    for step in range(3):
        keys = jax.random.split(jax.random.fold_in(KEY, step), n)
        a = jnp.asarray(rng.integers(0, env.num_actions, n), jnp.int32)
        want, got = want_fn(keys, s, a, params), got_fn(keys, s, a, params)
        assert bool(np.any(np.asarray(want[3]) | np.asarray(want[4])))
        assert jax.tree.structure(want) == jax.tree.structure(got)
        for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        s = want[1]


def test_render_and_gif(tmp_path):
    from envs_jax.gif import render_episode, save_gif

    frames = render_episode(Overcooked("lettuce_tomato_salad"), [1, 4, 7, 3, 1, 6])
    assert len(frames) == 7
    for f in frames:
        assert f.dtype == np.uint8 and f.shape == (7 * 48 + 40, 7 * 48, 3)
    assert not np.array_equal(frames[0], frames[1])
    path = tmp_path / "ep.gif"
    save_gif(frames, str(path))
    assert path.read_bytes()[:6] == b"GIF89a"


def test_obs_radius_10_sees_the_whole_map():
    """The reference PPO baseline's radius (10) on the 7x7 map: every item is in view at every
    step, so the observation carries every true position and the memory is the truth; at the
    default radius 2 the reset view hides exactly the items more than 2 cells away."""
    far, near = Overcooked("lettuce_tomato_salad", obs_radius=10), Overcooked("lettuce_tomato_salad")
    params = far.default_params
    o_far, s = far.reset(KEY, params)
    o_near, _ = near.reset(KEY, params)
    lay = far.layout
    items = np.concatenate([np.asarray(s.food_pos), np.asarray(s.plate_pos)[None]])
    hidden = np.abs(items - np.asarray(s.agent)).max(axis=1) > 2
    assert hidden.any() and not hidden.all()
    for i, is_hidden in enumerate(hidden):  # foods take 3 entries (x, y, chop), the plate 2
        at = slice(3 * i, 3 * i + 2)
        assert np.asarray(o_far[at]).tolist() == items[i].tolist()
        assert np.asarray(o_near[at]).tolist() == ([0, 0] if is_hidden else items[i].tolist())
    n = 64
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    _, s = jax.vmap(far.reset, in_axes=(0, None))(keys, params)

    @jax.jit
    def run(s):
        def body(s, key):
            a = jax.random.randint(key, (n,), 0, far.num_actions)
            obs, s, *_ = jax.vmap(far.step, in_axes=(0, 0, 0, None))(jax.random.split(key, n), s, a, params)
            return s, (obs, s)
        return jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(4), 60))[1]

    obs, states = jax.tree.map(np.asarray, run(s))
    nf = lay.num_foods
    for f in range(nf):
        assert (obs[..., 3 * f:3 * f + 2] == states.food_pos[:, :, f]).all()
        assert (obs[..., 3 * f + 2] == states.food_chop[:, :, f]).all()
    assert (obs[..., 3 * nf:3 * nf + 2] == states.plate_pos).all()
    true = np.concatenate([states.food_pos, states.plate_pos[:, :, None]], axis=2)
    assert (states.mem == true).all()
    assert enumerate_reachable(far.task)["states"].success.any()
    with pytest.raises(ValueError, match="obs_radius must be a non-negative integer, got -1"):
        Overcooked("tomato_salad", obs_radius=-1)
