"""Training-iteration setups shared by ``test_train.py`` and ``profile_iteration.py``.

Variants of one SmolLM2 tomato-salad iteration at the reference batch (4 envs x 32 steps):

* ``default``: exactly what ``python -m twosome_jax.train`` builds (critic-feature cache on;
  the agent calls ``packed`` scoring without a static bound, so under jit the action region
  is the padded A*L = 40 slots).
* ``nocache``: as ``default`` with the critic feature computed by the LLM in the rollout.
* ``tight``: as ``default`` with the agent passing ``action_tokens_max`` (the largest total of
  action tokens over the reachable observations, 22) to tight ``packed`` scoring.
* ``tight-table``: as ``tight`` and the rollout scores every reachable observation once per
  iteration (the adapters do not change during a rollout) and looks the logits up, instead of
  scoring 4 observations at each of the 32 steps (22 < 128 for tomato salad).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twosome_jax import scoring
from twosome_jax.agents import LLMAgent, lookup_features

VARIANTS = ("default", "nocache", "tight", "tight-table")


@dataclasses.dataclass(frozen=True, eq=False)
class TightAgent(LLMAgent):
    """``LLMAgent`` + a static ``action_tokens_max`` (+ optionally a per-rollout logits table)."""

    action_tokens_max: int | None = None
    table_obs: Any = None  # [R, obs_dim] every reachable observation, or None

    def _logits(self, frozen, actor, tokens):
        base, lora = self._states(frozen, actor)
        return scoring.policy_logits(self.graphdef, base, lora, tokens, implementation=self.implementation,
                                     normalization=self.normalization, action_tokens_max=self.action_tokens_max)

    def policy_logits(self, frozen, actor, obs):
        return self._logits(frozen, actor, self.text_table.tokenize(obs))

    def rollout_outputs(self, frozen, actor, obs):
        tokens = self.text_table.tokenize(obs)
        return self._logits(frozen, actor, tokens), self.critic_input(frozen, actor, obs, tokens)


def make_setup(model: str = "smollm2-135m-instruct", num_envs: int = 4, num_steps: int = 32, **overrides):
    from envs_jax.overcooked.reachable import enumerate_reachable
    from twosome_jax import run as runlib
    from twosome_jax.config import TrainConfig

    cfg = TrainConfig(model=model, num_envs=num_envs, num_steps=num_steps,
                      total_timesteps=num_envs * num_steps * 100, **overrides)
    setup = runlib.build(cfg)
    reach = np.asarray(enumerate_reachable(setup.env.task)["obs"])
    S = scoring.max_action_tokens(jax.tree.map(np.asarray, setup.agent.text_table.tokenize(jnp.asarray(reach))))
    return cfg, setup, reach, S


def variant(cfg, setup, reach, S, name: str):
    """(trainer, frozen) for one variant; the trainer's ``iteration`` / ``rollout`` are pure."""
    from twosome_jax.trainer import Trainer

    agent, frozen = setup.agent, dict(setup.frozen)
    if name == "nocache":
        frozen = {"base": frozen["base"]}
    if name.startswith("tight"):
        fields = {f.name: getattr(agent, f.name) for f in dataclasses.fields(LLMAgent)}
        agent = TightAgent(**fields, action_tokens_max=S)
    trainer = Trainer.from_config(cfg, agent, setup.env, setup.env_params)
    if name == "tight-table":
        trainer = TableTrainer(**{f.name: getattr(trainer, f.name) for f in dataclasses.fields(Trainer)})
        frozen["table_obs"] = jnp.asarray(reach)
    return trainer, frozen


from twosome_jax.trainer import Trainer  # noqa: E402


@dataclasses.dataclass(frozen=True, eq=False)
class TableTrainer(Trainer):
    """Rollout that scores every reachable observation once, then looks logits up per step."""

    def rollout(self, frozen, state):
        agent = self.agent
        table_logits = agent.policy_logits(frozen, state.actor, frozen["table_obs"])  # [R, A]

        class _Lookup:
            def __getattr__(self, name):
                return getattr(agent, name)

            def rollout_outputs(self, frozen_, actor, obs):
                logits = lookup_features(frozen["table_obs"], table_logits, obs)
                return logits, agent.critic_input(frozen_, actor, obs)

        inner = dataclasses.replace(self, agent=_Lookup())
        return Trainer.rollout(inner, frozen, state)
