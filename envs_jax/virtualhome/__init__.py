"""JAX-native VirtualHome of TWOSOME (reference: github.com/WeihaoTan/TWOSOME @ 9694566) and the
unseen-task text variants of POAD (github.com/morning9393/ADRL @ 5ec1aa5)."""

from .env import EnvParams, EnvState, VirtualHome
from .tasks import TASKS, Task, get_task
from .text import describe

__all__ = ["VirtualHome", "EnvState", "EnvParams", "Task", "TASKS", "get_task", "describe"]
