"""Static layouts and task table (reference notes §1).

Everything here is plain Python / numpy and fixed at environment construction; the jitted
game logic closes over it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..registry import FAMILIES
from . import constants as C


@dataclasses.dataclass(frozen=True)
class Layout:
    """One reference map: item order, spawn cells, fixed cells, macro list."""

    name: str
    foods: tuple[str, ...]  # food items in item-list order
    food_spawn: tuple[tuple[int, int], ...]
    plate_spawn: tuple[int, int]
    knives: tuple[tuple[int, int], ...]
    delivery: tuple[int, int]
    agent_start: tuple[int, int]

    @property
    def num_foods(self) -> int:
        return len(self.foods)

    @property
    def num_knives(self) -> int:
        return len(self.knives)

    @property
    def plate_index(self) -> int:
        """Index of the plate among the movable items (foods first, then the plate)."""
        return self.num_foods

    @property
    def obs_dim(self) -> int:
        # foods (x, y, chop) + plate, knives, delivery, agent (x, y) + 7-way recipe one-hot
        return 3 * self.num_foods + 2 * (1 + self.num_knives + 1 + 1) + len(C.RECIPES)

    @property
    def agent_obs_index(self) -> int:
        return 3 * self.num_foods + 2 * (1 + self.num_knives + 1)

    # ---- macro actions (reference notes §1) -------------------------------------------------------
    @property
    def macro_names(self) -> tuple[str, ...]:
        names = [f"get {f}" for f in self.foods] + ["get plate 1"]
        names += [f"go to knife {k + 1}" for k in range(self.num_knives)]
        return tuple(names + ["deliver", "chop"])

    @property
    def num_actions(self) -> int:
        return len(self.macro_names)

    def base_grid(self) -> np.ndarray:
        """The true grid of fixed cells: border counters, knives, delivery; floor inside."""
        g = np.zeros((C.GRID_SIZE, C.GRID_SIZE), np.int32)
        g[0, :] = g[-1, :] = g[:, 0] = g[:, -1] = C.COUNTER
        for k in self.knives:
            g[k] = C.KNIFE
        g[self.delivery] = C.DELIVERY
        return g


TASK0_LAYOUT = Layout(
    name="task0",
    foods=("tomato",),
    food_spawn=((0, 5),),
    plate_spawn=(6, 5),
    knives=((1, 0),),
    delivery=(3, 0),
    agent_start=(1, 4),
)

TASK3_LAYOUT = Layout(
    name="task3",
    foods=("tomato", "lettuce", "onion"),
    food_spawn=((0, 5), (1, 6), (2, 6)),
    plate_spawn=(6, 5),
    knives=((1, 0), (2, 0)),
    delivery=(3, 0),
    agent_start=(1, 4),
)


@dataclasses.dataclass(frozen=True)
class Task:
    """A task = a layout + a recipe (index into ``constants.RECIPES``) + the view radius.

    ``obs_radius`` is the Chebyshev radius within which the agent sees items (the TWOSOME
    scripts use 2; the reference's PPO-baseline script ``ppo_raw_env.py`` keeps its default
    10, which on the 7x7 map sees everything)."""

    name: str
    env_id: str
    layout: Layout
    recipe_index: int
    obs_radius: int = C.OBS_RADIUS

    @property
    def recipe(self) -> str:
        return C.RECIPES[self.recipe_index]

    @property
    def recipe_foods(self) -> tuple[str, ...]:
        """Foods of the recipe, in the layout's item order."""
        return tuple(f for f in self.layout.foods if f in self.recipe)

    @property
    def recipe_mask(self) -> tuple[bool, ...]:
        # The reference tests `food_name in recipe_string` (a substring test).
        return tuple(f in self.recipe for f in self.layout.foods)


def _make_tasks() -> dict[str, Task]:
    """The registry's Overcooked tasks: tomato salad on the task-0 layout, every other recipe on
    the task-3 layout (all foods exist there); the recipe is read off the task name."""
    tasks = {}
    for name, env_id in FAMILIES["overcooked"].tasks.items():
        layout = TASK0_LAYOUT if name == "tomato_salad" else TASK3_LAYOUT
        recipe = name.replace("_salad", " salad").replace("_", "-")
        tasks[name] = Task(name, env_id, layout, C.RECIPES.index(recipe))
    return tasks


TASKS: dict[str, Task] = _make_tasks()
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
ENV_IDS: dict[str, str] = {t.env_id: t.name for t in TASKS.values()}


def get_task(name: str) -> Task:
    """Look a task up by task name (``tomato_salad``) or env id (``Overcooked-TomatoSalad-v0``)."""
    if name in TASKS:
        return TASKS[name]
    if name in ENV_IDS:
        return TASKS[ENV_IDS[name]]
    raise ValueError(
        f"unknown Overcooked task {name!r}; valid: {', '.join(TASK_NAMES)} "
        f"(or env ids {', '.join(ENV_IDS)})"
    )
