"""Constants of the reference Overcooked (TWOSOME, map "A", one agent, obs radius 2).

See ``docs/reference-notes.md`` §1. Grid coordinates are ``(x, y)`` with
x the row (0 = top) and y the column (0 = left).
"""

from __future__ import annotations

# Primitive actions (reference notes §1): 0 right (y+1), 1 down (x+1), 2 left (y-1), 3 up (x-1), 4 stay.
RIGHT, DOWN, LEFT, UP, STAY = 0, 1, 2, 3, 4
# (dx, dy) of each primitive action, indexed by action.
ACTION_DELTAS = ((0, 1), (1, 0), (0, -1), (-1, 0), (0, 0))

# Cell codes (true grid and belief grid).
SPACE, COUNTER, AGENT, TOMATO, LETTUCE, PLATE, KNIFE, DELIVERY, ONION = range(9)
FOOD_CODES = {"tomato": TOMATO, "lettuce": LETTUCE, "onion": ONION}

GRID_SIZE = 7
OBS_RADIUS = 2
CHOP_DONE = 3  # a food is chopped once its chop count reaches 3

# The reference recipe list; the one-hot at the end of the observation indexes it.
RECIPES = (
    "tomato salad",
    "lettuce salad",
    "onion salad",
    "lettuce-tomato salad",
    "onion-tomato salad",
    "lettuce-onion salad",
    "lettuce-onion-tomato salad",
)

# Rewards (scripts use --env-reward 0.2 1 0.1 0.001) and the in-macro discount.
REWARD_SUBTASK = 0.2
REWARD_CORRECT = 1.0
REWARD_WRONG = -0.1
REWARD_STEP = -0.001
MACRO_DISCOUNT = 0.99
MAX_PRIMITIVE_STEPS = 200

# Static bounds for the jitted loops.
MAX_MACRO_PRIMS = 16  # bound of the macro loop; the longest reachable macro takes 10 steps
