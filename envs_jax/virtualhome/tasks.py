"""The VirtualHome tasks: their actions, observation keys and goals, and the text variants.

Two simulator tasks (reference notes §2): food preparation (the reference's ``VirtualHome-v1``: heat
the pancake in the microwave) and entertainment (``VirtualHome-v2``: watch TV with chips and
milk). The unseen-task tests of POAD (github.com/morning9393/ADRL @ 5ec1aa5,
``mappo/envs/virtualhome/virtualhome_variants.py``) are *text* variants of food preparation: the
same MDP, node ids and script lines, with the object noun ``pancake`` and the container noun
``microwave`` of the prompt and the action strings replaced
(ADRL @ 5ec1aa5, ``mappo/envs/virtualhome/virtualhome_<variant>.py``; reference notes §2). A :class:`Task` is therefore an :class:`MDP` plus
the two nouns its text uses.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from .. import registry
from . import constants as C
from . import scene as S


@dataclasses.dataclass(frozen=True)
class Action:
    """One env action: the reference's script line, its verb and nodes (scene rows), and the text
    the policy reads (food-preparation nouns; variants substitute theirs)."""

    script: str
    verb: int
    obj: int = C.NO_NODE
    dest: int = C.NO_NODE
    text: str = ""


@dataclasses.dataclass(frozen=True)
class MDP:
    """A simulator task: actions in env order, observation bits ``(key, kind, a, b)`` (the kinds
    of :func:`rules.observe`), and the goal as a function of the observation by key."""

    name: str
    actions: tuple[Action, ...]
    obs: tuple[tuple[str, str, int, int], ...]
    goal: Callable[[dict[str, jax.Array]], jax.Array]

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _, _, _ in self.obs)


def _walk(name: str, row: int, text: str) -> Action:
    return Action(f"[WALK] <{name}> ({S.NODES[row].id})", C.WALK, row, text=text)


_ROOMS = ((S.LIVINGROOM, "livingroom", "the living room"), (S.KITCHEN, "kitchen", "the kitchen"),
          (S.BATHROOM, "bathroom", "the bathroom"), (S.BEDROOM, "bedroom", "the bedroom"))
_WALK_ROOMS = tuple(_walk(name, row, f"walk to {text}") for row, name, text in _ROOMS)
_IN_ROOMS = (("in_kitchen", "in", S.KITCHEN, -1), ("in_bathroom", "in", S.BATHROOM, -1),
             ("in_bedroom", "in", S.BEDROOM, -1), ("in_livingroom", "in", S.LIVINGROOM, -1))

P, MW = S.PANCAKE, S.MICROWAVE
FOOD_PREPARATION = MDP(
    name="food_preparation",
    # graph_environment_v1.py create_action_list; texts of twosome/virtualhome/policy_v1.py
    actions=_WALK_ROOMS + (
        _walk("pancake", P, "walk to the pancake"),
        _walk("microwave", MW, "walk to the microwave"),
        Action("[GRAB] <pancake> (62)", C.GRAB, P, text="grab the pancake"),
        Action("[PUTIN] <pancake> (62) <microwave> (109)", C.PUTIN, P, MW, "put the pancake in the microwave"),
        Action("[OPEN] <microwave> (109)", C.OPEN, MW, text="open the microwave"),
        Action("[CLOSE] <microwave> (109)", C.CLOSE, MW, text="close the microwave"),
    ),
    obs=_IN_ROOMS + (
        ("see_pancake", "see", P, -1), ("close_to_pancake", "close", P, -1), ("hold_pancake", "hold", P, -1),
        ("see_microwave", "see", MW, -1), ("close_to_microwave", "close", MW, -1),
        ("is_microwave_open", "open", MW, -1), ("pancake_in_microwave", "inside", P, MW),
    ),
    # the pancake is out of sight in the kitchen only inside the closed microwave
    goal=lambda o: (o["in_kitchen"] == 1) & (o["see_pancake"] == 0),
)

CH, MK, TV, SF, CT = S.CHIPS, S.MILK, S.TV, S.SOFA, S.COFFEETABLE
ENTERTAINMENT = MDP(
    name="entertainment",
    # graph_environment_v2.py create_action_list; texts of twosome/virtualhome/policy_v2.py
    actions=_WALK_ROOMS + (
        _walk("chips", CH, "walk to the chips"),
        _walk("milk", MK, "walk to the milk"),
        _walk("coffeetable", CT, "walk to the coffee table"),
        _walk("television", TV, "walk to the TV"),
        _walk("sofa", SF, "walk to the sofa"),
        Action("[Grab] <chips> (61)", C.GRAB, CH, text="grab the chips"),
        Action("[Grab] <milk> (46)", C.GRAB, MK, text="grab the milk"),
        Action("[putback] <chips> (61) <coffeetable> (268)", C.PUTBACK, CH, CT, "put the chips on the coffee table"),
        Action("[putback] <milk> (46) <coffeetable> (268)", C.PUTBACK, MK, CT, "put the milk on the coffee table"),
        Action("[SWITCHON] <television> (297)", C.SWITCHON, TV, text="turn on the TV"),
        Action("[SWITCHOFF] <television> (297)", C.SWITCHOFF, TV, text="turn off the TV"),
        Action("[SIT] <sofa> (276)", C.SIT, SF, text="sit on the sofa"),
        Action("[StandUp]", C.STANDUP, text="stand up from the sofa"),
    ),
    obs=_IN_ROOMS + (
        ("see_chips", "see", CH, -1), ("close_to_chips", "close", CH, -1), ("hold_chips", "hold", CH, -1),
        ("chips_on_coffeetable", "on", CH, CT),
        ("see_milk", "see", MK, -1), ("close_to_milk", "close", MK, -1), ("hold_milk", "hold", MK, -1),
        ("milk_on_coffeetable", "on", MK, CT),
        ("see_tv", "see", TV, -1), ("close_to_tv", "close", TV, -1), ("is_face_tv", "facing", TV, -1),
        ("is_tv_on", "switched_on", TV, -1),
        ("see_sofa", "see", SF, -1), ("close_to_sofa", "close", SF, -1), ("is_sit_sofa", "sits_on", SF, -1),
        ("see_coffeetable", "see", CT, -1), ("close_to_coffeetable", "close", CT, -1),
    ),
    goal=lambda o: ((o["in_livingroom"] == 1) & (o["is_face_tv"] == 1) & (o["is_tv_on"] == 1)
                    & (o["is_sit_sofa"] == 1) & ((o["close_to_milk"] == 1) | (o["milk_on_coffeetable"] == 1))
                    & ((o["close_to_chips"] == 1) | (o["chips_on_coffeetable"] == 1))),
)


@dataclasses.dataclass(frozen=True)
class Task:
    """A registered VirtualHome task: the MDP it runs and the nouns of its text.

    ``food``/``container`` replace ``pancake``/``microwave`` in the food-preparation text (the
    variants); ``variant`` is ADRL's ``--variant`` name (None for the two paper tasks)."""

    name: str
    mdp: MDP
    variant: str | None = None
    food: str = "pancake"
    container: str = "microwave"

    @property
    def env_id(self) -> str:
        return registry.FAMILIES["virtualhome"].tasks[self.name]

    @property
    def action_texts(self) -> tuple[str, ...]:
        return tuple(a.text.replace("pancake", self.food).replace("microwave", self.container)
                     for a in self.mdp.actions)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("food_preparation", FOOD_PREPARATION),
    Task("entertainment", ENTERTAINMENT),
    # ADRL virtualhome_variants.py init_variant_env: (--variant name, noun for pancake, for microwave)
    Task("cheese", FOOD_PREPARATION, "Cheese", "cheese"),
    Task("hamburger", FOOD_PREPARATION, "Hamburger", "hamburger"),
    Task("apple_pie", FOOD_PREPARATION, "Apple Pie", "apple pie"),
    Task("pizza", FOOD_PREPARATION, "Pizza", "pizza"),
    Task("washing_plate", FOOD_PREPARATION, "Washing Plate", "dishes", "dishwasher"),
    Task("laundry", FOOD_PREPARATION, "Laundry", "clothes", "washing machine"),
)}
assert tuple(TASKS) == tuple(registry.FAMILIES["virtualhome"].tasks), "tasks and registry disagree"


def get_task(name: str | Task) -> Task:
    """The task for a task name or env id; :class:`registry.UnknownEnvironment` (one line,
    naming the valid ones) otherwise."""
    if isinstance(name, Task):
        return name
    by_id = {t.env_id: t for t in TASKS.values()}
    if name in TASKS:
        return TASKS[name]
    if name in by_id:
        return by_id[name]
    raise registry.UnknownEnvironment(
        f"unknown VirtualHome task {name!r}; valid tasks: {', '.join(TASKS)} "
        f"(or their env ids, e.g. {TASKS['food_preparation'].env_id})")
