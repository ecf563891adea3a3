"""Which environments exist: env ids and task names, by family. Imports nothing heavy.

This is the one list of environments. ``envs_jax.make`` builds from it, the training config
validates ``task`` against it, and the command-line tools take their choices from it; it
imports neither JAX nor any family's code, so a command can check its arguments (and print
``--help``) before paying for a JAX import.

A family is one environment class that serves several tasks (``Overcooked("tomato_salad")``,
``VirtualHome("cheese")``). Adding a family means writing ``envs_jax/<family>/`` (a class
implementing :mod:`envs_jax.interface`) and adding one :class:`Family` entry below.
"""

from __future__ import annotations

import dataclasses
import importlib


class UnknownEnvironment(ValueError):
    """An env id or task name that no family registers; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Family:
    """An environment class and the tasks it serves.

    ``entry`` is ``"module:Class"``; the class is built as ``Class(task_name, **kwargs)``.
    ``tasks`` maps each task name to its env id, in a stable order (the first is the family's
    default task). ``text``: the class is an :class:`envs_jax.interface.TextEnvironment`, so
    TWOSOME's agents (``twosome_jax.train``) accept it. ``agents``: the agents of the other
    trainers that accept it (e.g. ``guided-ppo``, ``twosome_jax.guided_train``, for an
    :class:`envs_jax.interface.GuidedEnvironment`).
    """

    name: str
    entry: str
    tasks: dict[str, str]
    text: bool = True
    agents: tuple[str, ...] = ()

    def load(self):
        module, cls = self.entry.split(":")
        return getattr(importlib.import_module(module), cls)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("overcooked", "envs_jax.overcooked.env:Overcooked", {
            "tomato_salad": "Overcooked-TomatoSalad-v0",
            "lettuce_tomato_salad": "Overcooked-LettuceTomatoSalad-v0",
            "lettuce_salad": "Overcooked-LettuceSalad-v0",
            "onion_salad": "Overcooked-OnionSalad-v0",
            "onion_tomato_salad": "Overcooked-OnionTomatoSalad-v0",
            "lettuce_onion_salad": "Overcooked-LettuceOnionSalad-v0",
            "lettuce_onion_tomato_salad": "Overcooked-LettuceOnionTomatoSalad-v0",
        }),
        Family("virtualhome", "envs_jax.virtualhome.env:VirtualHome", {
            "food_preparation": "VirtualHome-FoodPreparation-v0",
            "entertainment": "VirtualHome-Entertainment-v0",
            "cheese": "VirtualHome-Cheese-v0",
            "hamburger": "VirtualHome-Hamburger-v0",
            "apple_pie": "VirtualHome-ApplePie-v0",
            "pizza": "VirtualHome-Pizza-v0",
            "washing_plate": "VirtualHome-WashingPlate-v0",
            "laundry": "VirtualHome-Laundry-v0",
        }),
        Family("crafter", "envs_jax.crafter.env:Crafter", {
            "crafter": "Crafter-Classic-Symbolic-v0",
            "crafter_pixels": "Crafter-Classic-Pixels-v0",
        }, text=False, agents=("guided-ppo",)),
    )
}

TASK_NAMES: tuple[str, ...] = tuple(t for f in FAMILIES.values() for t in f.tasks)
ENV_IDS: dict[str, str] = {env_id: t for f in FAMILIES.values() for t, env_id in f.tasks.items()}
_FAMILY_OF: dict[str, Family] = {t: f for f in FAMILIES.values() for t in f.tasks}


def task_name(name: str) -> str:
    """The task name for a task name or an env id; :class:`UnknownEnvironment` otherwise."""
    if name in _FAMILY_OF:
        return name
    if name in ENV_IDS:
        return ENV_IDS[name]
    raise UnknownEnvironment(f"unknown task {name!r}; valid tasks: {', '.join(TASK_NAMES)} "
                             f"(or their env ids, e.g. {next(iter(ENV_IDS))})")


def family_of(name: str) -> Family:
    """The family that serves a task name or env id."""
    return _FAMILY_OF[task_name(name)]
