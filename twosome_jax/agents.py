"""The three agents of the paper's comparison, behind one interface.

* ``twosome``: the LLM policy. The actor is the frozen LLM plus LoRA adapters scoring every
  action string (``scoring.py``); the critic is an MLP on the frozen LLM's hidden state at the
  prompt's last token, adapters off. Only the adapters and the critic train.
* ``saycan``: the same LLM scores with the adapters never trained: the untrained policy.
* ``ppo-mlp``: PPO from scratch, actor and critic MLPs on the vector observation.

An agent is a set of pure functions; parameters live in the train state as plain dicts (so
checkpoints and exports see ordinary arrays) and what never trains is a separate argument,
``frozen``, that every seed and every device shares. For the LLM agents ``frozen`` holds the
base weights (``"base"``), the environment's reachable observations where it enumerates them
(``"cache_obs"`` [R, obs_dim]) and, optionally, a critic-feature cache on them
(``"cache_features"`` [R, D]); for ``ppo-mlp`` it is an empty dict.

The cache is exact, not an approximation: the critic reads the frozen base with adapters off,
so its feature is a function of the observation alone, and an environment whose reachable
observations can be enumerated (22 for tomato salad, 806 for lettuce-tomato salad) can have
them all computed once before training. The rollout then looks features up instead of running
the LLM over every prompt a second time. An observation missing from the cache (impossible when
the enumeration is complete, which the tests check against the golden traces) gets a NaN
feature, so the value, and every metric built on it, shows the gap loudly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twosome_jax import scoring
from twosome_jax.model.llama import init_lora_a
from twosome_jax.trie_scoring import prompt_rows, trie_prompt_hidden, trie_size


def _uniform_fan_in(key, fan_in: int, shape):
    """PyTorch's default ``nn.Linear`` weight init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def init_mlp(key, sizes, *, init="torch"):
    """Bias-free (torch init, as the reference critic) or biased orthogonal (CleanRL) MLP."""
    keys = jax.random.split(key, len(sizes) - 1)
    params = {}
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        if init == "torch":
            params[f"w{i}"] = _uniform_fan_in(k, n_in, (n_in, n_out))
        else:
            last = i == len(sizes) - 2
            params[f"w{i}"] = jax.nn.initializers.orthogonal(init if last else np.sqrt(2))(k, (n_in, n_out))
            params[f"b{i}"] = jnp.zeros((n_out,), jnp.float32)
    return params


def apply_mlp(params, x, activation=jax.nn.relu):
    n = len([k for k in params if k.startswith("w")])
    for i in range(n):
        x = x @ params[f"w{i}"]
        if f"b{i}" in params:
            x = x + params[f"b{i}"]
        if i < n - 1:
            x = activation(x)
    return x


def init_lora(lora_template: dict, key) -> dict:
    """Fresh PEFT-style adapters with the template's structure (``init_lora_a``, B = 0).

    Each seed of a multi-seed run draws its own A, so seeds differ from the first step.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(lora_template)
    keys = jax.random.split(key, len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "lora_a":
            out.append(init_lora_a(k, leaf.shape))
        else:
            out.append(jnp.zeros_like(leaf))
    return jax.tree_util.tree_unflatten(treedef, out)


def lookup_features(cache_obs, cache_features, obs):
    """Rows of ``cache_features`` whose ``cache_obs`` equals each observation; NaN when absent.

    Used for the critic-feature cache and for the rollout's table of policy logits."""
    match = jnp.all(obs[:, None, :] == cache_obs[None, :, :], axis=-1)  # [N, R]
    found = jnp.any(match, axis=-1, keepdims=True)
    return jnp.where(found, cache_features[jnp.argmax(match, axis=-1)], jnp.nan)


@dataclasses.dataclass(frozen=True, eq=False)
class LLMAgent:
    """TWOSOME (``learns_policy=True``) or SayCan (False) on a text table of the environment."""

    graphdef: Any
    lora_template: dict  # structure and shapes of the adapters (pure dict)
    text_table: Any  # an environment's compiled text: ``tokenize(obs) -> TextTokens``
    feature_dim: int
    critic_hidden: tuple[int, ...] = (1024, 512)
    implementation: str = "packed"
    normalization: str = "word"
    learns_policy: bool = True
    # the most real action tokens of any observation (static): ``packed`` scoring packs the
    # actions back to back into this many slots instead of A x L padded ones
    action_tokens_max: int | None = None
    # (rows, predicted tokens) that hold the reachable observations (``frozen["cache_obs"]``)
    # in shared rows, exactly (``reachable_size``, computed once on the host); None: they are
    # scored one packed row each
    table_level: tuple[int, int] | None = None

    def init(self, key):
        k_actor, k_critic = jax.random.split(key)
        actor = init_lora(self.lora_template, k_actor)
        critic = init_mlp(k_critic, (self.feature_dim, *self.critic_hidden, 1))
        return actor, critic

    def _states(self, frozen, actor):
        return nnx.State(frozen["base"]), nnx.State(actor)

    def policy_logits(self, frozen, actor, obs, count=None, level=None):
        """Logits [N, A]; with ``count`` only the first ``count`` rows are real (the others'
        logits are not to be read), scored in shared rows at ``level`` (``update_level``; None:
        the full size), see ``scoring.action_logprobs``."""
        base, lora = self._states(frozen, actor)
        return scoring.policy_logits(self.graphdef, base, lora, self.text_table.tokenize(obs),
                                     implementation=self.implementation, normalization=self.normalization,
                                     action_tokens_max=self.action_tokens_max, count=count, level=level)

    def reachable_size(self, observations) -> tuple[int, int] | None:
        """The exact shared-row size of ``observations`` (concrete, [R, obs_dim]): their prompts'
        common prefixes read once (``trie_scoring.trie_size``); None for ``naive`` scoring or
        an action region not bounded on the host (``action_tokens_max`` None)."""
        if self.implementation != "packed" or self.action_tokens_max is None:
            return None
        tokens = self.text_table.tokenize(jnp.asarray(observations, jnp.int32))
        return trie_size(tokens, self.action_tokens_max)

    def table_logits(self, frozen, actor):
        """Logits [R, A] of every reachable observation (``frozen["cache_obs"]``), the rollout's
        and the evaluation's table: in shared rows at their exact size (``table_level``), the
        scores of one packed row each (tests/test_trie_scoring.py) at a fraction of the slots
        where the prompts share long prefixes (entertainment's 213 observations with SmolLM2:
        7,680 slots against 29,607)."""
        obs = frozen["cache_obs"]
        if self.table_level is None:
            return self.policy_logits(frozen, actor, obs)
        return self.policy_logits(frozen, actor, obs, count=obs.shape[0], level=self.table_level)

    def update_level(self, frozen, obs, count):
        """(number of static sizes, traced index of the smallest that holds the first ``count``
        rows of ``obs``) for ``policy_logits(..., count, level)``; one size (None) for ``naive``."""
        if self.implementation != "packed":
            return 1, None
        return scoring.trie_level_of(self.text_table.tokenize(obs), count, self.action_tokens_max)

    def critic_input(self, frozen, actor, obs, tokens=None):
        if "cache_features" in frozen:
            return lookup_features(frozen["cache_obs"], frozen["cache_features"], obs)
        base, lora = self._states(frozen, actor)
        tokens = self.text_table.tokenize(obs) if tokens is None else tokens
        return scoring.critic_features(self.graphdef, base, lora, tokens)

    def rollout_outputs(self, frozen, actor, obs):
        """Policy logits and the critic's input for a batch of observations, one tokenization."""
        base, lora = self._states(frozen, actor)
        tokens = self.text_table.tokenize(obs)
        logits = scoring.policy_logits(self.graphdef, base, lora, tokens,
                                       implementation=self.implementation, normalization=self.normalization,
                                       action_tokens_max=self.action_tokens_max)
        return logits, self.critic_input(frozen, actor, obs, tokens)

    def feature_cache(self, base: dict, observations):
        """The critic feature [R, D] of every observation in ``observations`` [R, obs_dim], computed
        once (``frozen["cache_features"]``, rows in the order of ``frozen["cache_obs"]``): their
        prompts in shared rows, each common prefix read once (``trie_prompt_hidden``;
        lettuce-tomato salad's 806 prompts in 101 rows of 256 slots, against 64,480 slots one
        row each), the features ``scoring.critic_features`` gives (tests/test_critic_cache.py)."""
        observations = jnp.asarray(np.asarray(observations, np.int32))
        tokens = self.text_table.tokenize(observations)
        rows = prompt_rows(tokens)
        fn = jax.jit(lambda base, tokens: trie_prompt_hidden(
            self.graphdef, nnx.State(base), nnx.State(self.lora_template), tokens, False, rows))
        return fn(base, tokens)

    def value(self, critic, critic_input):
        return apply_mlp(critic, critic_input)[..., 0]


@dataclasses.dataclass(frozen=True, eq=False)
class MLPAgent:
    """PPO from scratch on the vector observation (the paper's PPO baseline)."""

    obs_dim: int
    num_actions: int
    hidden: tuple[int, ...] = (64, 64)
    learns_policy: bool = True
    # the environment's offered actions, bool [N, num_actions] (envs_jax.interface): the policy
    # chooses among the same actions as the LLM agents (the paper's VirtualHome PPO is masked)
    valid_actions: Any = None


    def init(self, key):
        k_actor, k_critic = jax.random.split(key)
        actor = init_mlp(k_actor, (self.obs_dim, *self.hidden, self.num_actions), init=0.01)
        critic = init_mlp(k_critic, (self.obs_dim, *self.hidden, 1), init=1.0)
        return actor, critic

    def policy_logits(self, frozen, actor, obs, count=None, level=None):
        """Logits [N, A] of every row (``count`` and ``level`` are ignored: an MLP costs nothing
        to run on all)."""
        logits = apply_mlp(actor, obs.astype(jnp.float32), jnp.tanh)
        return logits if self.valid_actions is None else jnp.where(self.valid_actions(obs), logits, -jnp.inf)

    def update_level(self, frozen, obs, count):
        return 1, None

    def critic_input(self, frozen, actor, obs):
        return obs.astype(jnp.float32)

    def rollout_outputs(self, frozen, actor, obs):
        return self.policy_logits(frozen, actor, obs), self.critic_input(frozen, actor, obs)

    def value(self, critic, critic_input):
        return apply_mlp(critic, critic_input, jnp.tanh)[..., 0]
