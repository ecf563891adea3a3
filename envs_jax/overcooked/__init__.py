"""JAX-native Overcooked of TWOSOME (reference: github.com/WeihaoTan/TWOSOME @ 9694566)."""

from .constants import RECIPES
from .env import EnvParams, EnvState, Overcooked
from .layout import ENV_IDS, TASK_NAMES, TASKS, Layout, Task, get_task
from .text import TextTable, TextTableError, TextTokens, describe

__all__ = [
    "Overcooked", "EnvState", "EnvParams", "Task", "Layout", "TASKS", "TASK_NAMES", "ENV_IDS",
    "RECIPES", "get_task", "describe", "TextTable", "TextTokens", "TextTableError",
]
