"""Episode constants and action verbs of the reference VirtualHome tasks (reference notes §2)."""

from __future__ import annotations

# Episode (graph_environment_v1.py / _v2.py of github.com/WeihaoTan/TWOSOME @ 9694566):
MAX_EPISODE_STEPS = 50  # max_episode_length; done once steps >= 50, failed actions included
SUCCESS_REWARD = 1.0  # the only non-zero reward, on the step that reaches the goal
RETURN_DISCOUNT = 0.95  # info["episode"]["r"] = sum_t 0.95^t r_t

# The script verbs the two tasks use, in the order of the rules' dispatch (rules.execute).
WALK, GRAB, PUTIN, PUTBACK, OPEN, CLOSE, SWITCHON, SWITCHOFF, SIT, STANDUP = range(10)
NUM_VERBS = 10
NO_NODE = -1  # an action without an object (StandUp) or without a destination
