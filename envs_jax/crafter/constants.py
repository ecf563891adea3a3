"""Crafter's names and RLAdapter's sub-goals, as data; and how Craftax-Classic's ids map onto them.

Crafter (danijar/crafter ``crafter/data.yaml``) names 17 actions, 22 achievements and 16
inventory items in a fixed order; its semantic map (``crafter/engine.py`` ``SemanticView``,
objects listed in ``crafter/env.py``) numbers the materials from 1 and the objects after them.
RLAdapter / AdaRefiner (PKU-RL/AdaRefiner ``utils.py``: ``TYPE_DICT``, ``ACTIONS_NAME``,
``QUERY_INTERVAL``; the sub-goal list in its decision-LLM prompt) writes its situation text
with these names. Craftax-Classic (the ``craftax`` package) implements the same game with its
own numbering (``craftax_classic/constants.py``: ``BlockType``, ``Achievement``, ``Action``);
the tables here translate it. This module imports nothing, so the Crafter score
(``score.py``) and the registry stay JAX-free.
"""

from __future__ import annotations

# Crafter's action order (data.yaml ``actions``); Craftax-Classic's ``Action`` enum has the
# same order under other names (LEFT, RIGHT, ..., DO), so an action index means the same in both.
ACTION_NAMES: tuple[str, ...] = (
    "noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone",
    "place_table", "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe",
    "make_iron_pickaxe", "make_wood_sword", "make_stone_sword", "make_iron_sword",
)

# Crafter's achievement order (data.yaml ``achievements``, alphabetical): the order of every
# per-achievement array this package produces and of the Crafter score's success rates.
ACHIEVEMENTS: tuple[str, ...] = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling",
    "collect_stone", "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant",
    "make_iron_pickaxe", "make_iron_sword", "make_stone_pickaxe", "make_stone_sword",
    "make_wood_pickaxe", "make_wood_sword", "place_furnace", "place_plant", "place_stone",
    "place_table", "wake_up",
)

# Craftax-Classic's ``Achievement`` enum order (the index of ``EnvState.achievements``).
CRAFTAX_ACHIEVEMENTS: tuple[str, ...] = (
    "collect_wood", "place_table", "eat_cow", "collect_sapling", "collect_drink",
    "make_wood_pickaxe", "make_wood_sword", "place_plant", "defeat_zombie", "collect_stone",
    "place_stone", "eat_plant", "defeat_skeleton", "make_stone_pickaxe", "make_stone_sword",
    "wake_up", "place_furnace", "collect_coal", "collect_iron", "collect_diamond",
    "make_iron_pickaxe", "make_iron_sword",
)

# ``achievements_craftax[CRAFTAX_TO_CRAFTER]`` is in Crafter's order.
CRAFTAX_TO_CRAFTER: tuple[int, ...] = tuple(CRAFTAX_ACHIEVEMENTS.index(a) for a in ACHIEVEMENTS)

# Crafter's semantic ids (AdaRefiner ``utils.py`` ``TYPE_DICT``): materials 1-12, then objects.
SEMANTIC_NAMES: dict[int, str] = {
    1: "water", 2: "grass", 3: "stone", 4: "path", 5: "sand", 6: "tree", 7: "lava", 8: "coal",
    9: "iron", 10: "diamond", 11: "table", 12: "furnace", 13: "player", 14: "cow", 15: "zombie",
    16: "skeleton", 17: "arrow", 18: "plant",
}
PLAYER = 13
COW, ZOMBIE, SKELETON, ARROW = 14, 15, 16, 17

# Craftax-Classic ``BlockType`` value -> Crafter semantic id (0: nothing Crafter names).
# INVALID, OUT_OF_BOUNDS and WOOD (unused in Classic) have none; both plant stages are the
# plant object (a Crafter plant is an object on grass; Craftax makes it a block).
BLOCK_TO_SEMANTIC: tuple[int, ...] = (
    0,   # INVALID
    0,   # OUT_OF_BOUNDS (outside the world; RLAdapter pads with 0 there)
    2,   # GRASS
    1,   # WATER
    3,   # STONE
    6,   # TREE
    0,   # WOOD
    4,   # PATH
    8,   # COAL
    9,   # IRON
    10,  # DIAMOND
    11,  # CRAFTING_TABLE -> table
    12,  # FURNACE
    5,   # SAND
    7,   # LAVA
    18,  # PLANT
    18,  # RIPE_PLANT
)

# Crafter's inventory order (data.yaml ``items``), the order of RLAdapter's status text.
INVENTORY: tuple[str, ...] = (
    "health", "food", "drink", "energy", "sapling", "wood", "stone", "coal", "iron", "diamond",
    "wood_pickaxe", "stone_pickaxe", "iron_pickaxe", "wood_sword", "stone_sword", "iron_sword",
)

# The 31 sub-goals the decision LLM chooses from (AdaRefiner ``utils.py`` ``gpt_template``):
# 0-21 are Crafter's skills and achievements, 22-30 composite goals.
SUBGOALS: tuple[str, ...] = (
    "eat plant", "attack zombie", "attack skeleton", "attack cow", "chop tree", "mine stone",
    "mine coal", "mine iron", "mine diamond", "drink water", "chop grass", "sleep", "place stone",
    "place crafting table", "place furnace", "place plant", "make wood pickaxe",
    "make stone pickaxe", "make iron pickaxe", "make wood sword", "make stone sword",
    "make iron sword", "plant row", "chop grass with wood pickaxe", "vegetarianism",
    "make workshop", "survival", "deforestation", "work and sleep", "gardening",
    "wilderness survival",
)

# Env steps between two guidance queries in RLAdapter's training (utils.py ``QUERY_INTERVAL``).
QUERY_INTERVAL = 100

# The local view Crafter's agent sees and RLAdapter describes: 9 wide (x) by 7 high (y);
# Craftax indexes positions (row, column) = (y, x), so its window is (7, 9).
VIEW_ROWS, VIEW_COLS = 7, 9
