"""One PPO iteration (rollout, text, scoring, GAE, update) as one pure function.

``Trainer.iteration(frozen, state) -> (state, metrics)`` is jitted whole: the environments
step inside a ``lax.scan`` over time and a ``vmap`` over environments, observations become
token ids through the environment's compiled text table, the LLM scores every action, the
action is sampled, the critic's feature is computed once and stored, then GAE and the PPO
epochs run. Python outside it only logs, checkpoints and draws progress.

``frozen`` (the LLM base weights) is an argument, never part of the state: it is not
copied per seed (``--num-seeds`` vmaps over the state with the base shared), has no gradient
and no optimizer state, and is never donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs_jax.interface import EPISODE_INFO_KEYS
from twosome_jax.agents import lookup_features
from twosome_jax.ppo import PPOHyper, Transition, gae, make_optimizer, ppo_update, ppo_update_joint, set_learning_rate


@struct.dataclass
class TrainState:
    actor: Any  # LoRA adapters (LLM agents) or the actor MLP
    critic: Any
    actor_opt: Any  # with ppo_update "joint": the one optimizer state of {"actor", "critic"}
    critic_opt: Any  # with ppo_update "joint": None
    env_state: Any  # batched over environments
    obs: chex.Array  # [num_envs, obs_dim] the current observations
    done: chex.Array  # [num_envs] the done flags that came with ``obs``
    rng: chex.Array
    iteration: chex.Array  # int32, updates done so far
    env_steps: chex.Array  # int32, macro steps taken, summed over environments


def table_size(frozen, visits: int) -> int:
    """Size of the reachable set where scoring it once beats scoring ``visits`` observations
    one by one, else 0 (also when the environment's observations are not enumerated).

    The adapters do not change during a rollout or an evaluation, so when the environment can
    produce fewer distinct observations than will be visited, scoring all of them once and
    looking the logits up at each step is exact and cheaper (:func:`lookup_features`). The
    count decides, not the table's slots in shared rows against the visits' rows: a rollout's
    memo scores only the observations it has not met, far fewer than its visits."""
    size = frozen["cache_obs"].shape[0] if "cache_obs" in frozen else 0
    return size if size < visits else 0


def quarter_sizes(bound: int) -> tuple[int, ...]:
    """Static batch sizes a quarter, half, three quarters and all of ``bound`` (rounded up): a
    ``lax.switch`` over them scores a variable count at most a quarter of ``bound`` too many
    (the rollout memo's new observations, at most one per environment)."""
    return tuple(sorted({-(-bound * j // 4) for j in (1, 2, 3, 4)}))


def per_seed(fn, num_seeds: int):
    """``fn(frozen, x)`` over the leading seed axis of ``x`` and of the result.

    Several seeds are vmapped. One seed is squeezed instead: under vmap a ``lax.cond`` or
    ``lax.switch`` on per-seed values runs every branch, and the update's skips (target-KL stop,
    critic warm-up, scoring at the number of distinct observations) would save nothing."""
    if num_seeds > 1:
        return jax.vmap(fn, in_axes=(None, 0))

    def one(frozen, x):
        out = fn(frozen, jax.tree.map(lambda a: a[0], x))
        return jax.tree.map(lambda a: a[None], out)

    return one


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
    """Static parts of a run: agent, environment, sizes and PPO settings."""

    agent: Any
    env: Any
    env_params: Any
    num_envs: int
    num_steps: int
    num_updates: int
    gamma: float
    gae_lambda: float
    policy_learning_rate: float
    value_learning_rate: float
    anneal_lr: bool
    max_grad_norm: float
    critic_warmup_updates: int
    hyper: PPOHyper
    num_seeds: int = 1
    ppo_update: str = "phased"  # or "joint" (CleanRL's update, see twosome_jax.ppo)
    mesh: Any = None  # the (data, model) mesh the state is laid out on (run.make_mesh); None: one device

    @classmethod
    def from_config(cls, cfg, agent, env, env_params, mesh=None):
        batch = cfg.num_envs * cfg.num_steps
        hyper = PPOHyper(
            clip_coef=cfg.clip_coef, clip_vloss=cfg.clip_vloss, ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef,
            norm_adv=cfg.norm_adv, target_kl=cfg.target_kl, update_epochs=cfg.update_epochs,
            policy_num_minibatches=cfg.policy_num_minibatches, value_num_minibatches=cfg.value_num_minibatches,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps)
        policy_lr = cfg.mlp_learning_rate if cfg.agent == "ppo-mlp" else cfg.policy_learning_rate
        value_lr = cfg.mlp_learning_rate if cfg.agent == "ppo-mlp" else cfg.value_learning_rate
        return cls(agent=agent, env=env, env_params=env_params, num_envs=cfg.num_envs, num_steps=cfg.num_steps,
                   num_updates=max(cfg.total_timesteps // batch, 1), gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                   policy_learning_rate=policy_lr, value_learning_rate=value_lr, anneal_lr=cfg.anneal_lr,
                   max_grad_norm=cfg.max_grad_norm, critic_warmup_updates=cfg.critic_warmup_updates, hyper=hyper,
                   num_seeds=cfg.num_seeds, ppo_update=cfg.ppo_update, mesh=mesh)

    @property
    def joint(self) -> bool:
        return self.ppo_update == "joint"

    @property
    def actor_tx(self) -> optax.GradientTransformation:
        """The actor's AdamW, or with the joint update the one Adam over actor and critic."""
        if self.joint:
            return make_optimizer("adam", self.policy_learning_rate, self.max_grad_norm)
        return make_optimizer("adamw", self.policy_learning_rate, self.max_grad_norm)

    @property
    def critic_tx(self) -> optax.GradientTransformation:
        return make_optimizer("adam", self.value_learning_rate, self.max_grad_norm)

    def init(self, key) -> TrainState:
        """A fresh train state for one seed (vmap it over keys for several seeds)."""
        k_agent, k_env, k_run = jax.random.split(key, 3)
        actor, critic = self.agent.init(k_agent)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, self.num_envs), self.env_params)
        actor_opt = self.actor_tx.init({"actor": actor, "critic": critic} if self.joint else actor)
        return TrainState(
            actor=actor, critic=critic, actor_opt=actor_opt, critic_opt=None if self.joint else self.critic_tx.init(critic),
            env_state=env_state, obs=obs, done=jnp.zeros((self.num_envs,), bool), rng=k_run,
            iteration=jnp.int32(0), env_steps=jnp.int32(0))

    # -- rollout --------------------------------------------------------------------------
    def policy_table_size(self, frozen) -> int:
        """How many observations the rollout scores up front (0: it scores step by step):
        :func:`table_size` for the 4 x 32 observations a rollout visits (tomato salad: 22)."""
        return table_size(frozen, self.num_envs * self.num_steps)

    @property
    def policy_group_size(self) -> int:
        """Transitions per policy optimizer step (minibatch size x accumulation steps)."""
        hyper = self.hyper
        return hyper.gradient_accumulation_steps * (self.num_envs * self.num_steps // hyper.policy_num_minibatches)

    def policy_level_fn(self, frozen):
        """The agent's choice of static size for a policy-update group's distinct observations
        (``ppo.grad_over_distinct``); None (the full size) when seeds are vmapped, where a
        switch would run every branch."""
        if self.num_seeds > 1:
            return None
        return lambda obs, count: self.agent.update_level(frozen, obs, count)

    def policy_memo_sizes(self, frozen) -> tuple[int, ...]:
        """Batch sizes at which the rollout scores the observations it has not met yet, or ()
        when it scores every observation at every step.

        Where the reachable observations are enumerated but more than a rollout visits
        (lettuce-tomato salad: 806, entertainment: 213, against 128 visits), the rollout keeps a
        memo of the logits of every reachable observation it has scored so far: the adapters
        do not change during a rollout, so a repeated observation has the logits it had. Each
        step scores only the distinct new ones, at the smallest of these sizes that holds
        them (a ``lax.switch``; none when all are known). Off for vmapped seeds, where a switch
        runs every branch."""
        if "cache_obs" not in frozen or self.policy_table_size(frozen) or self.num_seeds > 1:
            return ()
        return quarter_sizes(self.num_envs)

    def _memo_logits(self, frozen, actor, obs, memo, known, sizes):
        """Logits of ``obs`` [N, obs_dim] from the memo, after scoring the distinct observations
        it lacks; NaN for an observation outside the enumerated set (as the table's lookup)."""
        cache_obs = frozen["cache_obs"]
        reach, n = cache_obs.shape[0], obs.shape[0]
        match = jnp.all(obs[:, None, :] == cache_obs[None, :, :], axis=-1)  # [N, R]
        found = jnp.any(match, axis=-1)
        idx = jnp.where(found, jnp.argmax(match, axis=-1), reach)
        first = jnp.argmax(idx[:, None] == idx[None, :], axis=1) == jnp.arange(n)  # first env at its index
        need = found & first & ~known[jnp.minimum(idx, reach - 1)]
        count = need.sum()
        order = jnp.argsort(~need, stable=True)  # the envs to score first

        def score(size):
            def branch(memo_known):
                memo, known = memo_known
                rows = order[:size]
                slots = jnp.where(jnp.arange(size) < count, idx[rows], reach)  # reach: dropped
                logits = self.agent.policy_logits(frozen, actor, obs[rows])
                return memo.at[slots].set(logits, mode="drop"), known.at[slots].set(True, mode="drop")
            return branch

        branches = [lambda memo_known: memo_known] + [score(s) for s in sizes]
        which = jnp.searchsorted(jnp.asarray((0,) + sizes), count)
        memo, known = jax.lax.switch(which, branches, (memo, known))
        logits = jnp.where(found[:, None], memo[jnp.minimum(idx, reach - 1)], jnp.nan)
        return logits, (memo, known)

    def rollout(self, frozen, state: TrainState):
        agent, env, params = self.agent, self.env, self.env_params
        table = agent.table_logits(frozen, state.actor) if self.policy_table_size(frozen) else None
        sizes = self.policy_memo_sizes(frozen) if table is None else ()
        if sizes:
            spec = jax.eval_shape(lambda o: agent.policy_logits(frozen, state.actor, o), state.obs)
            reach = frozen["cache_obs"].shape[0]
            memo0 = (jnp.zeros((reach, spec.shape[-1]), spec.dtype), jnp.zeros((reach,), bool))
        else:
            memo0 = ()

        def step(carry, _):
            env_state, obs, done, rng, memo = carry
            rng, k_act, k_env = jax.random.split(rng, 3)
            if table is not None:
                logits = lookup_features(frozen["cache_obs"], table, obs)
                critic_input = agent.critic_input(frozen, state.actor, obs)
            elif sizes:
                logits, memo = self._memo_logits(frozen, state.actor, obs, *memo, sizes)
                critic_input = agent.critic_input(frozen, state.actor, obs)
            else:
                logits, critic_input = agent.rollout_outputs(frozen, state.actor, obs)
            value = agent.value(state.critic, critic_input)
            action = jax.random.categorical(k_act, logits).astype(jnp.int32)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
            next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None))(jax.random.split(k_env, self.num_envs), env_state, action, params)
            next_done = terminated | truncated  # auto-reset happened; next_obs is a reset observation
            transition = Transition(obs=obs, action=action, logp=logp, value=value,
                                    reward=reward.astype(jnp.float32), done=done,
                                    macro_steps=info["macro_action_steps"], critic_input=critic_input)
            episode = {k: info[k] for k in EPISODE_INFO_KEYS if k != "macro_action_steps"}
            return (env_state, next_obs, next_done, rng, memo), (transition, episode)

        carry = (state.env_state, state.obs, state.done, state.rng, memo0)
        (env_state, obs, done, rng, _), (traj, episodes) = jax.lax.scan(step, carry, None, self.num_steps)
        state = state.replace(env_state=env_state, obs=obs, done=done, rng=rng,
                              env_steps=state.env_steps + self.num_envs * self.num_steps)
        return state, traj, episodes

    # -- one iteration --------------------------------------------------------------------
    def _whole(self, tree):
        """``tree`` (rollout arrays split over the environments) whole on every device, so that
        the logged means add in one order however many devices or processes hold the
        environments (partial sums of a split array would be combined in another order)."""
        if self.mesh is None:
            return tree
        from jax.sharding import NamedSharding, PartitionSpec as P

        return jax.lax.with_sharding_constraint(tree, NamedSharding(self.mesh, P()))

    def iteration(self, frozen, state: TrainState):
        """Rollout then PPO update; returns the new state and scalar metrics."""
        frac = 1.0 - state.iteration.astype(jnp.float32) / self.num_updates if self.anneal_lr else 1.0
        actor_opt = set_learning_rate(state.actor_opt, self.policy_learning_rate * frac)
        critic_opt = None if self.joint else set_learning_rate(state.critic_opt, self.value_learning_rate * frac)

        state, traj, episodes = self.rollout(frozen, state)
        next_value = self.agent.value(state.critic, self.agent.critic_input(frozen, state.actor, state.obs))
        advantages, returns = gae(traj.reward, traj.value, traj.done, traj.macro_steps, next_value, state.done,
                                  self.gamma, self.gae_lambda)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        batch = jax.tree.map(flat, traj)
        rng, k_update = jax.random.split(state.rng)
        def policy_logits_fn(actor, obs, count=None, level=None):
            return self.agent.policy_logits(frozen, actor, obs, count=count, level=level)
        if self.joint:
            params, actor_opt, update_metrics = ppo_update_joint(
                hyper=self.hyper, policy_logits_fn=policy_logits_fn, value_fn=self.agent.value,
                params={"actor": state.actor, "critic": state.critic}, opt_state=actor_opt, tx=self.actor_tx,
                batch=batch, advantages=flat(advantages), returns=flat(returns), rng=k_update)
            actor, critic = params["actor"], params["critic"]
        else:
            train_policy = (state.iteration >= self.critic_warmup_updates) if self.agent.learns_policy else False
            actor, actor_opt, critic, critic_opt, update_metrics = ppo_update(
                hyper=self.hyper, policy_logits_fn=policy_logits_fn, value_fn=self.agent.value,
                actor_params=state.actor, critic_params=state.critic,
                actor_opt=actor_opt, critic_opt=critic_opt, actor_tx=self.actor_tx, critic_tx=self.critic_tx,
                batch=batch, advantages=flat(advantages), returns=flat(returns), rng=k_update,
                train_policy=train_policy, policy_level_fn=self.policy_level_fn(frozen))
        state = state.replace(actor=actor, critic=critic, actor_opt=actor_opt, critic_opt=critic_opt, rng=rng,
                              iteration=state.iteration + 1)
        rewards, values, episodes = self._whole((traj.reward, traj.value, episodes))
        finished = episodes["returned_episode"]
        n = finished.sum()
        safe = jnp.maximum(n, 1)
        metrics = dict(
            update_metrics,
            iteration=state.iteration, env_steps=state.env_steps, episodes=n,
            mean_return=jnp.where(n > 0, jnp.sum(episodes["returned_episode_returns"]) / safe, jnp.nan),
            success_rate=jnp.where(n > 0, jnp.sum(episodes["success"]) / safe, jnp.nan),
            mean_episode_length=jnp.where(n > 0, jnp.sum(episodes["returned_episode_lengths"]) / safe, jnp.nan),
            mean_macro_reward=rewards.mean(), value_mean=values.mean(),
            policy_learning_rate=self.policy_learning_rate * frac,
            params_finite=jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((actor, critic))])))
        return state, metrics
