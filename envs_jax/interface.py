"""What an LLM agent (and the trainer, ``evaluate`` and ``play``) needs from an environment.

Every family (``envs_jax/<family>/``) provides a gymnax ``Environment`` subclass with the
members of :class:`TextEnvironment`, registered in :mod:`envs_jax.registry` and built by
``envs_jax.make(name)``. Nothing above ``envs_jax`` knows a family by name: the trainer reads
observations, offered actions, text tables and the episode info keys below, and nothing else.

Decisions and time. One ``step`` is one decision of the agent. Overcooked's decision is a
macro action that runs several primitive steps; ``info["macro_action_steps"]`` says how many,
and GAE discounts the decision by ``gamma ** macro_action_steps``. A family whose decisions are
single steps reports 1, so the same GAE is the plain discount.

Episode info. ``step`` fills, on every step, the keys of :data:`EPISODE_INFO_KEYS`:
``returned_episode`` (the episode ended here), ``returned_episode_returns`` (its return, as the
reference reports it; 0 unless it ended), ``returned_episode_lengths`` (its length in the
family's own unit; 0 unless it ended), ``success`` (it ended by reaching the goal) and
``macro_action_steps``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence, runtime_checkable

import jax
import numpy as np

EPISODE_INFO_KEYS = ("returned_episode", "returned_episode_returns", "returned_episode_lengths", "success",
                     "macro_action_steps")


class Description(NamedTuple):
    """The exact host-side text of one observation, as the reference's obs->text gives it:
    the prompt, the offered action strings in the order the prompt lists them, and the env
    action index of each."""

    prompt: str
    actions: list[str]
    action_ids: list[int]


@runtime_checkable
class TextEnvironment(Protocol):
    """The members every registered environment has, beside gymnax's ``reset``/``step``."""

    name: str  # the env id
    task_name: str  # the registry's task name
    num_actions: int  # env actions; text tables have one slot per env action
    obs_dim: int  # observations are int32 vectors of this length
    action_names: tuple[str, ...]  # a short name per env action (traces, play, GIF captions)
    max_episode_steps: int  # decisions after which every episode has ended
    deterministic: bool  # reset and step ignore their keys: every greedy episode is the same

    def describe(self, obs: Sequence[int]) -> Description:
        """The exact prompt and offered actions of one observation (host side)."""

    def valid_actions(self, obs: jax.Array) -> jax.Array:
        """bool [..., num_actions]: the actions the observation offers (jittable). Any
        policy, text or not, chooses among these only."""

    def text_table(self, tokenizer: Any) -> Any:
        """The compiled text for ``tokenizer``: an object with a pure, jittable
        ``tokenize(obs [N, obs_dim]) -> envs_jax.text.TextTokens`` and a static
        ``action_tokens_max`` (the most real action tokens of any observation). Built once on
        the host; it verifies itself against the tokenizer."""

    def reachable_observations(self) -> np.ndarray | None:
        """Every observation reachable from reset, int32 [R, obs_dim], or None where they
        cannot be enumerated. An array lets the agent compute the frozen critic feature of
        each once and, where they are fewer than a rollout visits, score the policy on all of
        them once per rollout; None means neither (both are exact either way)."""

    def render(self, state: Any, caption: str = "") -> np.ndarray:
        """RGB uint8 [H, W, 3] picture of one (unbatched) state, for GIFs."""

    def trace_fields(self, info: dict) -> dict:
        """The family's own per-step fields of its reference traces (JSON-ready), for
        ``play --jsonl``: e.g. Overcooked's ``macro_action_steps`` and ``prims``."""
