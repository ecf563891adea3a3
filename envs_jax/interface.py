"""What the trainers, ``evaluate`` and ``play`` need from an environment.

Every family (``envs_jax/<family>/``) provides a gymnax ``Environment`` subclass, registered
in :mod:`envs_jax.registry` and built by ``envs_jax.make(name)``. Nothing above ``envs_jax``
knows a family by name: the trainers read the members below and nothing else. There are two
layers:

* :class:`Environment`: what every family has (the gymnax API, names, sizes, the episode info
  keys).
* :class:`GuidedEnvironment`: what the guided PPO trainer (``twosome_jax.guided_train``) needs
  on top: a vector of environments that resets itself (for families whose reset is too costly
  for gymnax's reset-at-every-step), achievement records, sub-goal texts.
* :class:`TextEnvironment`: what TWOSOME's text agents (``twosome``, ``saycan``) and the
  ``ppo-mlp`` baseline of ``twosome_jax.train`` need on top: the exact text of an observation,
  its compiled token tables, the offered actions. A family without text tables says so in the
  registry (``Family.agents``), and the training config rejects those agents for it.

Decisions and time. One ``step`` is one decision of the agent. Overcooked's decision is a
macro action that runs several primitive steps; ``info["macro_action_steps"]`` says how many,
and GAE discounts the decision by ``gamma ** macro_action_steps``. A family whose decisions are
single steps reports 1, so the same GAE is the plain discount.

Episode info. ``step`` fills, on every step, the keys of :data:`EPISODE_INFO_KEYS`:
``returned_episode`` (the episode ended here), ``returned_episode_returns`` (its return, as the
reference reports it; 0 unless it ended), ``returned_episode_lengths`` (its length in the
family's own unit; 0 unless it ended), ``success`` (it ended by reaching the goal; always False
for a family without a goal) and ``macro_action_steps``.
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
class Environment(Protocol):
    """The members every registered environment has, beside gymnax's ``reset``/``step``
    (``step`` auto-resets on ``terminated | truncated``) and ``observation_space(params)``
    (whose ``.shape`` and ``.dtype`` are the observation's)."""

    name: str  # the env id
    task_name: str  # the registry's task name
    num_actions: int  # env actions (discrete)
    action_names: tuple[str, ...]  # a short name per env action (traces, play, text)
    max_episode_steps: int  # decisions after which every episode has ended (default params)
    deterministic: bool  # reset and step ignore their keys: every greedy episode is the same


@runtime_checkable
class GuidedEnvironment(Environment, Protocol):
    """What the guided PPO trainer (``twosome_jax.guided_train``) needs beside
    :class:`Environment`: a vector of environments that resets its finished ones itself,
    cheaply, per-episode achievement records, and the sub-goals an instruction names.

    ``vector(num_envs)`` returns an object with ``num_envs``,

    * ``reset(key, params) -> (obs [N, ...], state)``,
    * ``step(key, state, action [N], params) -> (obs, state, reward, terminated, truncated, info)``,
      the arrays [N]; ``obs`` of a finished env is already its next episode's first observation
      and ``info["final_observation"]`` the observation the episode ended on;

    and ``info`` carries :data:`EPISODE_INFO_KEYS` and ``returned_episode_achievements``, bool
    [N, len(achievements)]: what the episode unlocked (zero unless ``returned_episode``)."""

    achievements: tuple[str, ...]  # the columns of info["returned_episode_achievements"]
    subgoals: tuple[str, ...]  # the sub-goal texts an instruction chooses from

    def vector(self, num_envs: int) -> Any:
        """The vector of ``num_envs`` environments."""

    def episode_metrics(self, episodes_with: np.ndarray, episodes: np.ndarray) -> dict[str, np.ndarray]:
        """The family's summary of finished episodes from totals (host side): ``episodes_with``
        [..., len(achievements)] counts the episodes that unlocked each achievement, out of
        ``episodes`` [...] (Crafter: its score)."""


@runtime_checkable
class TextEnvironment(Environment, Protocol):
    """What TWOSOME's agents need beside :class:`Environment`: observations are int32 vectors
    of ``obs_dim`` entries with an exact text and compiled token tables."""

    obs_dim: int  # observations are int32 vectors of this length

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
