"""Training-iteration setups shared by ``test_train.py`` and ``profile_iteration.py``.

Variants of one SmolLM2 tomato-salad iteration at the reference batch (4 envs x 32 steps):

* ``default``: exactly what ``python -m twosome_jax.train`` builds (since e2413a5/e940b13):
  critic-feature cache, tight ``packed`` scoring (the agent's ``action_tokens_max``, 22), and
  a rollout that scores the 22 reachable observations once and looks the logits up at each of
  the 32 steps (``Trainer.policy_table_size``).
* ``no-trie``: ``default`` with each policy-update group (8 minibatches of 4) scored at one
  packed row per observation, at the group's full 32 rows (its distinct observations first,
  the rest padding), instead of the distinct observations sharing rows and prompt prefixes
  at the cost of their real tokens (``trie_scoring``).
* ``no-memo``: ``default`` with the rollout scoring 4 observations at each step where no table
  applies, instead of only the observations it has not met yet (``Trainer.policy_memo_sizes``;
  tomato salad has a table, so there it equals ``default``).
* ``no-table``: ``default`` with the rollout scoring 4 observations at each step.
* ``padded``: ``no-table`` and ``no-trie`` with ``action_tokens_max=None``: under jit the
  action region is the padded A*L = 40 slots (the command before e2413a5).
* ``padded-nocache``: ``padded`` with the critic feature computed by the LLM in the rollout.

The results recorded in README.md before e2413a5 carry the earlier names of the same
configurations: ``default`` (then) = ``padded`` (now), ``tight`` = ``no-table``,
``tight-table`` = ``default``, ``nocache`` = ``padded-nocache``. Results before the trie
scoring name ``no-dedupe`` the update that scored every row of a group; ``no-trie`` costs the
same (32 packed rows).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from twosome_jax.agents import LLMAgent
from twosome_jax.trainer import Trainer

VARIANTS = ("default", "no-trie", "no-memo", "no-table", "padded", "padded-nocache")


@dataclasses.dataclass(frozen=True, eq=False)
class NoTableTrainer(Trainer):
    """The rollout scores step by step (no table of logits of the reachable observations)."""

    def policy_table_size(self, frozen) -> int:
        return 0

    def policy_memo_sizes(self, frozen) -> tuple[int, ...]:
        return ()


@dataclasses.dataclass(frozen=True, eq=False)
class NoMemoTrainer(Trainer):
    """Where no table applies, the rollout scores every observation at every step."""

    def policy_memo_sizes(self, frozen) -> tuple[int, ...]:
        return ()


class NoTrieAgent(LLMAgent):
    """Scores every row of a batch in its own packed row (the count of real rows is ignored)."""

    def policy_logits(self, frozen, actor, obs, count=None, level=None):
        return super().policy_logits(frozen, actor, obs)

    def update_level(self, frozen, obs, count):
        return 1, None


def make_setup(model: str = "smollm2-135m-instruct", num_envs: int = 4, num_steps: int = 32,
               task: str = "tomato_salad", **overrides):
    from twosome_jax import run as runlib
    from twosome_jax.config import TrainConfig

    cfg = TrainConfig(model=model, task=task, num_envs=num_envs, num_steps=num_steps,
                      total_timesteps=num_envs * num_steps * 100, **overrides)
    setup = runlib.build(cfg)
    reach = np.asarray(setup.env.reachable_observations())
    return cfg, setup, reach, setup.agent.action_tokens_max


def variant(cfg, setup, reach, S, name: str):
    """(trainer, frozen) for one variant; the trainer's ``iteration`` / ``rollout`` are pure."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; accepted: {', '.join(VARIANTS)}")
    agent, frozen = setup.agent, dict(setup.frozen)
    if name == "no-trie" or name.startswith("padded"):
        agent = NoTrieAgent(**{f.name: getattr(agent, f.name) for f in dataclasses.fields(agent)})
    agent = dataclasses.replace(agent, action_tokens_max=None if name.startswith("padded") else S)
    if name == "padded-nocache":
        frozen = {"base": frozen["base"]}
    cls = {"default": Trainer, "no-trie": Trainer, "no-memo": NoMemoTrainer}.get(name, NoTableTrainer)
    return cls.from_config(cfg, agent, setup.env, setup.env_params), frozen
