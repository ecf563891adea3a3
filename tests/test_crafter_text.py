"""RLAdapter's situation text (envs_jax/crafter/text.py) against hand-checked strings, on states
made by editing a reset state's fields, and against craftax's own symbolic view of a world."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from craftax.craftax_classic.constants import BlockType as B

from crafter_support import craftax_world
from envs_jax.crafter import text
from envs_jax.crafter.constants import BLOCK_TO_SEMANTIC, COW, SKELETON, ZOMBIE, ARROW


@pytest.fixture(scope="module")
def world():
    return craftax_world(jax.random.PRNGKey(11))


def _mobs(mobs, positions):
    """The first len(positions) slots alive at ``positions`` (row, col), the rest dead."""
    n = mobs.mask.shape[0]
    pos = np.zeros((n, 2), np.int32)
    pos[:len(positions)] = np.asarray(positions, np.int32).reshape(-1, 2)
    return mobs.replace(position=jnp.asarray(pos), mask=jnp.arange(n) < len(positions))


def _scene(state, ground, cells, player, zombies=(), cows=(), skeletons=(), arrows=()):
    world = np.full((64, 64), ground.value, np.int32)
    for (r, c), block in cells.items():
        world[r, c] = block.value
    return state.replace(map=jnp.asarray(world), player_position=jnp.asarray(player, jnp.int32),
                         zombies=_mobs(state.zombies, zombies), cows=_mobs(state.cows, cows),
                         skeletons=_mobs(state.skeletons, skeletons), arrows=_mobs(state.arrows, arrows))


def test_player_sees_window_order_and_objects_over_ground(world):
    _, state = world
    y, x = 32, 32  # rows are y, columns x: the window is rows 29..35, columns 28..36
    cells = {
        (29, 28): B.WATER,          # top-left corner: seen
        (35, 36): B.STONE,          # bottom-right corner: seen
        (28, 32): B.TREE,           # one row above the window: not seen
        (32, 37): B.LAVA,           # one column right of it: not seen
        (32, 32): B.SAND,           # under the player: hidden by the player
        (33, 31): B.CRAFTING_TABLE,  # "table"
        (30, 30): B.RIPE_PLANT,     # "plant"
        (35, 28): B.DIAMOND,        # under an arrow: hidden by it
        (29, 36): B.IRON,           # under a cow: hidden
    }
    scene = _scene(state, B.GRASS, cells, (y, x), zombies=[(32, 28)], cows=[(29, 36)],
                   skeletons=[(33, 33)], arrows=[(35, 28)])  # the skeleton is then killed
    scene = scene.replace(skeletons=scene.skeletons.replace(mask=jnp.zeros_like(scene.skeletons.mask)))
    assert text.player_sees(scene) == "Player sees: <water, grass, stone, table, cow, zombie, arrow, plant>."
    view = text.semantic_view(scene)
    assert view.shape == (7, 9) and view[3, 4] == 13 and view[0, 0] == 1 and view[6, 8] == 3
    # ground hidden everywhere it appears: only the cow's cell held grass
    only = _scene(state, B.SAND, {(31, 33): B.GRASS}, (y, x), cows=[(31, 33)])
    assert text.player_sees(only) == "Player sees: <sand, cow>."
    # a skeleton is listed when alive and in view
    alive = _scene(state, B.PATH, {}, (y, x), skeletons=[(34, 35)])
    assert text.player_sees(alive) == "Player sees: <path, skeleton>."


def test_player_sees_at_the_edge_of_the_world(world):
    _, state = world
    corner = _scene(state, B.PATH, {(0, 1): B.FURNACE, (3, 4): B.COAL}, (0, 0))
    # outside the world is padding (no name); (3, 4) is inside the window, (0, 1) too
    assert text.player_sees(corner) == "Player sees: <path, coal, furnace>."
    assert (text.semantic_view(corner)[:3] == 0).all() and (text.semantic_view(corner)[:, :4] == 0).all()
    alone = _scene(state, B.GRASS, {}, (0, 0))
    alone = alone.replace(map=alone.map.at[0, 0].set(B.SAND.value))
    assert text.player_sees(alone) == "Player sees: <grass>."


def test_player_status_in_crafters_order(world):
    _, state = world
    s = state.replace(player_health=9, player_food=9, player_drink=8, player_energy=9,
                      inventory=state.inventory.replace(wood=2))
    assert text.player_status(s) == "Player status: <9 health, 9 food, 8 drink, 9 energy, 2 wood>."
    s = state.replace(player_health=0, player_food=3, player_drink=0, player_energy=1,
                      inventory=state.inventory.replace(wood=1, sapling=4, iron_sword=1, coal=5, stone_pickaxe=2))
    assert text.player_status(s) == ("Player status: <3 food, 1 energy, 4 sapling, 1 wood, 5 coal, "
                                     "2 stone_pickaxe, 1 iron_sword>.")
    assert text.status_items(s)[0] == ("food", 3)


def test_action_history():
    assert text.action_history([0, 1, 5, 8, 16]) == "noop, move_left, do, place_table, make_iron_sword"
    assert text.action_history([]) == ""
    assert text.past_action([3, 4, 6]) == "Past action: <sleep>."
    assert text.past_action([]) == "Past action: <>."
    with pytest.raises(ValueError, match="action 17 is not a Crafter action; accepted: 0..16"):
        text.action_history([2, 17])


def test_semantic_view_matches_craftax_symbolic_observation(world):
    """On a generated world: the materials and creatures of our window are those of craftax's
    own 7 x 9 observation (its block one-hots, and its zombie/cow/skeleton/arrow channels)."""
    obs, state = world
    grid = np.asarray(obs)[:7 * 9 * 21].reshape(7, 9, 21)
    blocks = np.asarray(BLOCK_TO_SEMANTIC)[grid[..., :17].argmax(-1)]
    for channel, semantic in enumerate((ZOMBIE, COW, SKELETON, ARROW)):
        blocks = np.where(grid[..., 17 + channel] > 0, semantic, blocks)
    blocks[3, 4] = 13
    np.testing.assert_array_equal(text.semantic_view(state), blocks)
