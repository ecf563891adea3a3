"""Crafter as Craftax-Classic (envs_jax/crafter): the tables against craftax's own enums, the
optimistic reset against craftax's own reset (same key, same world), and the episode records on a
scripted episode. Few, tiny compilations: one vector of 3 envs, jitted once for the module."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax_classic import constants as CC

import envs_jax
from envs_jax import interface
from envs_jax.crafter import constants as C
from crafter_support import craftax_world, quick_jit

N, R = 3, 2
MAX_STEPS = 4  # short episodes: the scripted one ends by the time limit


def test_tables_match_craftax():
    assert C.CRAFTAX_ACHIEVEMENTS == tuple(a.name.lower() for a in CC.Achievement)
    assert sorted(C.ACHIEVEMENTS) == list(C.ACHIEVEMENTS) and set(C.ACHIEVEMENTS) == set(C.CRAFTAX_ACHIEVEMENTS)
    craftax_actions = [a.name.lower() for a in CC.Action]
    moves = {"left", "right", "up", "down"}
    assert [f"move_{a}" if a in moves else a for a in craftax_actions] == list(C.ACTION_NAMES)
    aliases = {"crafting_table": "table", "ripe_plant": "plant"}
    for block in CC.BlockType:
        semantic = C.BLOCK_TO_SEMANTIC[block.value]
        name = aliases.get(block.name.lower(), block.name.lower())
        if semantic:
            assert C.SEMANTIC_NAMES[semantic] == name
        else:
            assert block.name in ("INVALID", "OUT_OF_BOUNDS", "WOOD")
    assert len(C.SUBGOALS) == len(set(C.SUBGOALS)) == 31 and C.SUBGOALS[13] == "place crafting table"
    assert len(C.INVENTORY) == 16


def test_registry_and_interface():
    env, params = envs_jax.make("Crafter-Classic-Symbolic-v0")
    assert (env.name, env.task_name, env.num_actions, env.max_episode_steps) == (
        "Crafter-Classic-Symbolic-v0", "crafter", 17, 10_000)
    assert env.observation_space(params).shape == (1345,) and env.action_names == C.ACTION_NAMES
    assert isinstance(env, interface.GuidedEnvironment) and not isinstance(env, interface.TextEnvironment)
    family = envs_jax.registry.family_of("crafter_pixels")
    assert (family.text, family.agents) == (False, ("guided-ppo",))
    env, params = envs_jax.make("crafter", max_timesteps=MAX_STEPS)
    assert params.max_timesteps == MAX_STEPS
    with pytest.raises(ValueError, match=r"resets_per_step=5 is invalid; accepted: an integer in 1\.\.num_envs=4"):
        env.vector(4, resets_per_step=5)


def test_twosome_agents_are_refused_without_jax():
    """The training config rejects TWOSOME's agents for a family without text tables, in one line
    naming the task and the agents that accept it, from the registry alone (no JAX import)."""
    import subprocess
    import sys

    code = ("import sys\nfrom twosome_jax.config import ConfigError, TrainConfig\n"
            "for agent in ('twosome', 'saycan', 'ppo-mlp'):\n"
            "    try:\n        TrainConfig(task='Crafter-Classic-Symbolic-v0', agent=agent)\n"
            "    except ConfigError as e:\n        print(e)\n"
            "assert 'jax' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"task 'crafter' has no text tables, so agent '{a}' cannot run on it; agents that accept it: guided-ppo"
        for a in ("twosome", "saycan", "ppo-mlp")]


@pytest.fixture(scope="module")
def crafter():
    env, params = envs_jax.make("crafter", max_timesteps=MAX_STEPS)
    vec = env.vector(N, resets_per_step=R, reset_chunk=2)  # chunks of 2 and the remainder
    return env, params, vec, quick_jit(vec.reset), quick_jit(vec.step)



def test_reset_is_craftax_reset_in_chunks(crafter):
    env, params, vec, reset, _ = crafter
    key = jax.random.PRNGKey(7)
    obs, state = reset(key, params)
    assert obs.shape == (N, 1345) and state.game.map.shape == (N, 64, 64)
    keys = jax.random.split(key, N)
    for i in range(N):
        ref_obs, ref = craftax_world(keys[i])
        np.testing.assert_array_equal(state.game.map[i], ref.map)
        np.testing.assert_array_equal(state.game.player_position[i], ref.player_position)
        np.testing.assert_allclose(obs[i], ref_obs, atol=1e-6)  # the light level differs by an ulp under vmap
    assert np.all(state.episode_return == 0)
    assert len({bytes(np.asarray(m)) for m in state.game.map}) == N  # distinct worlds


def _face_tree(game, i):
    """Env i looks right at a tree, with no creature nearby (a scripted, deterministic episode)."""
    row, col = (int(v) for v in game.player_position[i])
    world = game.map.at[i, row, col + 1].set(CC.BlockType.TREE.value)
    no_mobs = lambda mobs: mobs.replace(mask=mobs.mask.at[i].set(False))
    return game.replace(map=world, player_direction=game.player_direction.at[i].set(CC.Action.RIGHT.value),
                        zombies=no_mobs(game.zombies), cows=no_mobs(game.cows),
                        skeletons=no_mobs(game.skeletons), arrows=no_mobs(game.arrows))


def test_scripted_episode_records_and_optimistic_reset(crafter):
    """Env 0 chops the tree it faces (Craftax turns it into grass) and waits; the time limit
    (4 steps) ends every episode at once. Its record: collect_wood only, return = its rewards'
    sum, length 4. The three finished envs
    get the two fresh worlds of the step in index order, the third sharing the first."""
    env, params, vec, reset, step = crafter
    _, state = reset(jax.random.PRNGKey(1), params)
    state = state.replace(game=_face_tree(state.game, 0))
    do, noop = CC.Action.DO.value, CC.Action.NOOP.value
    script = [do, noop, noop, noop]
    rewards = []
    for t, a in enumerate(script):
        key = jax.random.PRNGKey(100 + t)
        obs, state, reward, terminated, truncated, info = step(key, state, jnp.array([a, noop, noop]), params)
        rewards.append(np.asarray(reward))
        if t < MAX_STEPS - 1:
            assert not np.asarray(info["returned_episode"]).any()
            assert not np.asarray(info["returned_episode_achievements"]).any()
            assert np.all(state.game.timestep == t + 1)
    rewards = np.stack(rewards)
    assert rewards[0, 0] == pytest.approx(1.0)  # the first wood unlocks collect_wood
    assert np.all(np.asarray(truncated)) and not np.asarray(terminated).any()
    assert np.all(np.asarray(info["returned_episode"]))
    np.testing.assert_array_equal(info["returned_episode_lengths"], [MAX_STEPS] * N)
    np.testing.assert_allclose(info["returned_episode_returns"], rewards.sum(0), rtol=1e-6)
    unlocked = np.asarray(info["returned_episode_achievements"])
    assert unlocked.shape == (N, 22)
    assert [C.ACHIEVEMENTS[j] for j in np.flatnonzero(unlocked[0])] == ["collect_wood"]
    assert not np.asarray(info["success"]).any() and np.all(np.asarray(info["macro_action_steps"]) == 1)
    # the final observation is the stepped one (env 0 holds 1 wood: the inventory entry is 1/10 in float16)
    final = np.asarray(info["final_observation"])
    wood = final.shape[1] - 22  # the inventory starts after the 7 x 9 x 21 map channels
    assert final[0, wood] == pytest.approx(0.1, abs=1e-3) and final[1, wood] == 0.0
    # every env restarted, on the step's fresh worlds: slots 0, 1, 0
    _, reset_key = jax.random.split(jax.random.PRNGKey(100 + MAX_STEPS - 1))
    fresh = [craftax_world(k) for k in jax.random.split(reset_key, R)]
    for i, slot in enumerate([0, 1, 0]):
        np.testing.assert_array_equal(state.game.map[i], fresh[slot][1].map)
        np.testing.assert_allclose(obs[i], fresh[slot][0], atol=1e-6)
    assert np.all(state.game.timestep == 0) and np.all(state.episode_return == 0)
    assert not np.asarray(state.game.achievements).any()
    # a step where nothing ends leaves every env running (no reset)
    obs2, state2, *_ , info2 = step(jax.random.PRNGKey(5), state, jnp.zeros(N, jnp.int32), params)
    assert np.all(state2.game.timestep == 1) and not np.asarray(info2["returned_episode"]).any()
