"""RLAdapter's text of the agent's situation, from a Craftax-Classic state (host side, numpy).

AdaRefiner (``models/lm.py`` ``AdaLM.inst_generate``, ``utils.py`` ``get_fov_types``) describes
the agent to its language models with three pieces, rebuilt here from the state's fields:

* what the player sees: the names of the object types in the 9 wide x 7 high window of Crafter's
  semantic map centred on the player, padded with nothing outside the world, in ascending
  semantic id (``constants.SEMANTIC_NAMES``), each once, the player left out. Crafter's semantic
  map (danijar/crafter ``engine.py`` ``SemanticView``) writes each object over the material
  under it, so a cell holding a cow, zombie, skeleton or arrow shows the creature and not its
  ground, and the player's cell shows the player (which is then dropped);
* the status: ``"{value} {item}"`` for every inventory entry above zero, in Crafter's item order
  (``constants.INVENTORY``: health, food, drink, energy, then the items);
* the action history: Crafter's action names joined by ``", "``.

``player_sees``/``player_status``/``past_action`` give the ``Player sees: <...>.`` sentences of
the prompts. Craftax states hold positions as (row, column) = (y, x): the window is rows
``y - 3 .. y + 3`` and columns ``x - 4 .. x + 4``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from . import constants as C

_BLOCK_TO_SEMANTIC = np.asarray(C.BLOCK_TO_SEMANTIC, np.int32)
_MOBS = (("zombies", C.ZOMBIE), ("cows", C.COW), ("skeletons", C.SKELETON), ("arrows", C.ARROW))


def _game(state):
    """The craftax state of an :class:`~envs_jax.crafter.env.EnvState` (or that state itself)."""
    return getattr(state, "game", state)


def semantic_view(state) -> np.ndarray:
    """int32 [7, 9]: Crafter's semantic ids around the player (rows = y, columns = x), 0 outside
    the world, creatures over their ground, the player (13) at the centre."""
    game = _game(state)
    world = _BLOCK_TO_SEMANTIC[np.asarray(game.map)]
    for field, semantic in _MOBS:
        mobs = getattr(game, field)
        for (row, col), alive in zip(np.asarray(mobs.position), np.asarray(mobs.mask)):
            if alive and 0 <= row < world.shape[0] and 0 <= col < world.shape[1]:
                world[row, col] = semantic
    row, col = (int(v) for v in np.asarray(game.player_position))
    world[row, col] = C.PLAYER
    view = np.zeros((C.VIEW_ROWS, C.VIEW_COLS), np.int32)
    dr, dc = C.VIEW_ROWS // 2, C.VIEW_COLS // 2
    for i in range(C.VIEW_ROWS):
        for j in range(C.VIEW_COLS):
            r, c = row - dr + i, col - dc + j
            if 0 <= r < world.shape[0] and 0 <= c < world.shape[1]:
                view[i, j] = world[r, c]
    return view


def fov_names(state) -> list[str]:
    """The object types the player sees, in ascending semantic id, player excluded."""
    ids = np.unique(semantic_view(state))
    return [C.SEMANTIC_NAMES[int(i)] for i in ids if i not in (0, C.PLAYER)]


def status_items(state) -> list[tuple[str, int]]:
    """``(item, value)`` for Crafter's inventory entries above zero, in Crafter's order."""
    game = _game(state)
    values = {"health": game.player_health, "food": game.player_food, "drink": game.player_drink,
              "energy": game.player_energy}
    items = [(name, int(values[name]) if name in values else int(getattr(game.inventory, name)))
             for name in C.INVENTORY]
    return [(name, v) for name, v in items if v > 0]


def action_history(actions: Iterable[int]) -> str:
    """Crafter's names of ``actions`` (env action indices, oldest first) joined by ``", "``."""
    names = []
    for a in actions:
        a = int(a)
        if not 0 <= a < len(C.ACTION_NAMES):
            raise ValueError(f"action {a} is not a Crafter action; accepted: 0..{len(C.ACTION_NAMES) - 1}")
        names.append(C.ACTION_NAMES[a])
    return ", ".join(names)


def player_sees(state) -> str:
    return f"Player sees: <{', '.join(fov_names(state))}>."


def player_status(state) -> str:
    return f"Player status: <{', '.join(f'{v} {k}' for k, v in status_items(state))}>."


def past_action(actions: Iterable[int]) -> str:
    """``Past action: <name>.`` of the last action (empty before the first)."""
    actions = list(actions)
    return f"Past action: <{action_history(actions[-1:])}>."
