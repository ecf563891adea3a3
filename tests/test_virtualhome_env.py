"""The JAX VirtualHome against the reference: its state machines and its golden episodes.

The references (tests/data/README.md): ``vh_*_fsm.json.gz``, the minimal state machines of the
reference simulator over every graph reachable from reset under all actions, and
``virtualhome_*.jsonl.gz``, golden episodes recorded from the reference (the variants' text from
ADRL's variant code).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax import interface
from envs_jax.registry import UnknownEnvironment
from envs_jax.virtualhome.env import EnvState, VirtualHome
from envs_jax.virtualhome.reachable import enumerate_reachable

DATA = Path(__file__).parent / "data"
GOLDEN_TASKS = ("food_preparation", "entertainment", "cheese", "washing_plate", "laundry")
ALL_TASKS = ("food_preparation", "entertainment", "cheese", "hamburger", "apple_pie", "pizza",
             "washing_plate", "laundry")
MDPS = ("food_preparation", "entertainment")
KEY = jax.random.PRNGKey(0)


@lru_cache(maxsize=None)
def golden(task: str) -> list[dict]:
    with gzip.open(DATA / f"virtualhome_{task}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


@lru_cache(maxsize=None)
def fsm(mdp: str) -> dict:
    with gzip.open(DATA / f"vh_{mdp}_fsm.json.gz", "rt") as f:
        return json.load(f)


def spec_goal(mdp: str, o) -> bool:
    """Spec 3.5, written from the spec: reward 1 and done on these observations."""
    if mdp == "food_preparation":
        return o[0] == 1 and o[4] == 0
    return bool(o[3] and o[14] and o[15] and o[18] and (o[9] or o[11]) and (o[5] or o[7]))


@pytest.mark.parametrize("mdp", MDPS)
def test_every_fsm_transition_is_reproduced(mdp):
    """BFS over the env's graphs under every action; the map graph -> FSM state is consistent
    (same observation, the same succeed flag and the mapped successor under every action) and
    onto all FSM states. The goal (reward 1 and done, reference notes §2) holds on the same observations
    as the spec's formula."""
    env = VirtualHome(mdp)
    r = enumerate_reachable(mdp)
    table = fsm(mdp)
    obs0, _ = env.reset_env(KEY, env.default_params)
    assert np.asarray(obs0).tolist() == table["obs"][table["initial_state"]] == r["state_obs"][0].tolist()
    S, A = r["next"].shape
    assert A == env.num_actions == len(table["env_actions"])
    assert list(env.scripts) == table["env_actions"]
    to_fsm = {0: table["initial_state"]}
    queue = [0]
    transitions = 0
    while queue:
        s = queue.pop()
        f = to_fsm[s]
        assert r["state_obs"][s].tolist() == table["obs"][f], (s, f)
        for a in range(A):
            assert bool(r["ok"][s, a]) == (table["ok"][f][a] == "1"), (s, f, a, table["example_hidden"][f])
            s2, f2 = int(r["next"][s, a]), table["next"][f][a]
            if s2 in to_fsm:
                assert to_fsm[s2] == f2, (s, f, a)
            else:
                to_fsm[s2] = f2
                queue.append(s2)
            transitions += 1
    assert len(to_fsm) == S and set(to_fsm.values()) == set(range(len(table["obs"])))
    assert transitions == S * A
    print(f"{mdp}: {S} graphs -> {len(table['obs'])} FSM states, {transitions} transitions")
    goal = np.asarray(env.is_goal(jnp.asarray(table["obs"], jnp.int32)))
    assert goal.tolist() == [spec_goal(mdp, o) for o in table["obs"]] and goal.any()


def test_reachable_observation_counts():
    """20 and 213 distinct observations (the FSMs' counts); the variants share food preparation's."""
    for mdp in MDPS:
        distinct = {tuple(o) for o in fsm(mdp)["obs"]}
        got = VirtualHome(mdp).reachable_observations()
        assert got.dtype == np.int32 and {tuple(o) for o in got.tolist()} == distinct
    assert len(VirtualHome("food_preparation").reachable_observations()) == 20
    assert len(VirtualHome("entertainment").reachable_observations()) == 213
    np.testing.assert_array_equal(VirtualHome("laundry").reachable_observations(),
                                  VirtualHome("food_preparation").reachable_observations())


@lru_cache(maxsize=None)
def _replay_fn(env: VirtualHome):
    params = env.default_params

    def one(actions):
        obs0, s = env.reset_env(KEY, params)

        def body(s, a):
            obs, s, r, done, info = env.step_env(KEY, s, a, params)
            return s, (obs, r, done, info)

        return obs0, jax.lax.scan(body, s, actions)[1]

    return jax.jit(jax.vmap(one))


def replay(task: str):
    """All golden episodes of a task at once: vmap over episodes, scan over padded actions
    (variants of one MDP share the compiled function)."""
    env = VirtualHome(task)
    eps = golden(task)
    acts = np.zeros((len(eps), max(len(e["steps"]) for e in eps)), np.int32)
    for i, e in enumerate(eps):
        acts[i, : len(e["steps"])] = [s["action"] for s in e["steps"]]
    return env, eps, jax.tree.map(np.asarray, _replay_fn(env)(jnp.asarray(acts)))


@pytest.mark.parametrize("task", GOLDEN_TASKS)
def test_golden_replay(task):
    env, eps, (obs0, (obs, rew, done, info)) = replay(task)
    assert len(eps) == 58 and sum(e["success"] for e in eps) >= 8
    steps = 0
    seen = []
    for i, e in enumerate(eps):
        prev = obs0[i]
        for t, s in enumerate(e["steps"]):
            where = f"{task} episode {i} step {t}"
            assert prev.tolist() == s["obs"], where
            assert env.describe(prev) == (s["prompt"], s["actions"], s["action_ids"]), where
            assert env.scripts[s["action"]] == s["env_action"], where
            assert float(rew[i, t]) == s["reward"], where
            assert bool(done[i, t]) == s["done"], where
            assert bool(info["succeed"][i, t]) == s["succeed"], where
            assert int(info["macro_action_steps"][i, t]) == 1
            if "episode_info" in s:  # the reference's info["episode"], on the last step
                assert t == len(e["steps"]) - 1 and bool(info["returned_episode"][i, t]), where
                assert int(info["returned_episode_lengths"][i, t]) == s["episode_info"]["l"], where
                assert abs(float(info["returned_episode_returns"][i, t]) - s["episode_info"]["r"]) < 1e-6, where
                assert bool(info["success"][i, t]) == e["success"], where
            else:
                assert not bool(info["returned_episode"][i, t]), where
                assert float(info["returned_episode_returns"][i, t]) == 0.0, where
            seen.append((prev, s["action_ids"]))
            prev = obs[i, t]
            steps += 1
        assert prev.tolist() == e["final"]["obs"]
        assert env.describe(prev) == (e["final"]["prompt"], e["final"]["actions"], e["final"]["action_ids"])
        seen.append((prev, e["final"]["action_ids"]))
    assert steps == sum(len(e["steps"]) for e in eps)
    # the offered actions, in-graph, batched, equal the reference's on every golden observation
    mask = np.asarray(jax.jit(env.valid_actions)(jnp.asarray(np.stack([o for o, _ in seen]))))
    assert [np.flatnonzero(m).tolist() for m in mask] == [ids for _, ids in seen]


@pytest.mark.parametrize("task", ALL_TASKS)
def test_valid_actions_equal_describe_on_every_reachable_observation(task):
    env = VirtualHome(task)
    obs = env.reachable_observations()
    mask = np.asarray(jax.vmap(env.valid_actions)(jnp.asarray(obs)))  # jitted in test_golden_replay
    assert mask.shape == (len(obs), env.num_actions) and mask.dtype == np.bool_
    for o, m in zip(obs, mask):
        ids = env.describe(o).action_ids
        assert np.flatnonzero(m).tolist() == sorted(ids) and 3 <= len(ids) <= 7
    np.testing.assert_array_equal(env.valid_actions(jnp.asarray(obs[3])), mask[3])
    unreachable = np.ones(env.obs_dim, np.int32)  # every room at once
    assert not np.asarray(env.valid_actions(jnp.asarray(unreachable))).any()


def test_interface_members():
    for task, n_actions, obs_dim in (("food_preparation", 10, 11), ("entertainment", 17, 21)):
        env, params = envs_jax.make(task)
        assert isinstance(env, interface.TextEnvironment)
        assert (env.name, env.task_name, env.num_actions, env.obs_dim) == (
            envs_jax.registry.FAMILIES["virtualhome"].tasks[task], task, n_actions, obs_dim)
        assert len(env.action_names) == len(set(env.action_names)) == n_actions
        assert (env.max_episode_steps, env.deterministic) == (50, True)
        assert env.trace_fields({"succeed": jnp.bool_(True)}) == {"succeed": True}


def test_gymnax_step_ends_and_resets_the_shortest_success():
    """Spec 3.5's 6-step success through gymnax's own (jitted, auto-resetting) step."""
    env, params = envs_jax.make("food_preparation")
    obs, state = env.reset(KEY, params)
    assert obs.dtype == jnp.int32
    plan = [4, 6, 5, 8, 7, 9]
    for t, a in enumerate(plan):
        assert a in env.describe(obs).action_ids
        obs, state, reward, terminated, truncated, info = env.step(KEY, state, a, params)
        last = t == len(plan) - 1
        assert (float(reward), bool(terminated), bool(truncated), bool(info["succeed"])) == (float(last), last, False, True)
    assert bool(info["success"]) and int(info["returned_episode_lengths"]) == len(plan)
    assert float(info["returned_episode_returns"]) == pytest.approx(0.95 ** (len(plan) - 1))
    assert int(state.time) == 0 and obs.tolist() == [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0]  # auto-reset
    assert info["final_observation"].tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]  # pancake out of sight


def test_rendering_shows_the_scene():
    """Graphs with different observations give different pictures."""
    for mdp in MDPS:
        env = VirtualHome(mdp)
        r = enumerate_reachable(mdp)
        first = {tuple(o): s for s, o in reversed(list(enumerate(r["state_obs"].tolist())))}
        frames = [env.render(EnvState(graph=jax.tree.map(lambda x: x[s], r["graphs"]), time=jnp.int32(0),
                                      ep_return=jnp.float32(0), ep_discount=jnp.float32(1)))
                  for s in first.values()]
        assert all(f.dtype == np.uint8 and f.shape == frames[0].shape and f.shape[2] == 3 for f in frames)
        assert len({f.tobytes() for f in frames}) == len(frames) == len(env.reachable_observations())


def test_unknown_task_is_one_line_naming_the_valid_ones():
    for bad in ("heat_pancake", "VirtualHome-v1"):
        with pytest.raises(UnknownEnvironment) as err:
            VirtualHome(bad)
        msg = str(err.value)
        assert "\n" not in msg and bad in msg and all(t in msg for t in ALL_TASKS)
    with pytest.raises(UnknownEnvironment) as err:
        envs_jax.make("VirtualHome-Sandwich-v0")
    assert "\n" not in str(err.value) and "laundry" in str(err.value)
    assert VirtualHome("VirtualHome-ApplePie-v0").task_name == "apple_pie"
