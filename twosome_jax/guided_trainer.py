"""One iteration of instruction-conditioned PPO (rollout, GAE, update) as one pure function.

``GuidedTrainer.iteration(table, state) -> (state, metrics, episodes)`` is compiled whole, in
PureJaxRL's style: the environments step inside a ``lax.scan`` over time, the agent of every
seed acts through a ``vmap`` over seeds, then GAE (``ppo.gae``) and CleanRL's minibatch update
(``ppo.ppo_update_joint``: one Adam over actor and critic) run per seed. Python outside it only
logs, writes episodes, checkpoints and draws progress (``guided_train``).

A trainer whose instructions come from the host (RLAdapter's language models, ``rladapter_train``)
runs the same iteration in pieces: :data:`collect` rolls out a segment of a static number of
steps under the instruction rows the host put in the state, and :data:`update` runs GAE and the
PPO update on the iteration's segments, concatenated in time. ``iteration`` is ``rollout`` then
``update`` in one program.

The environments of all seeds step as one vector (``env.vector(num_seeds * num_envs)``): a
vector resets through ``lax.cond`` only on steps where an episode ended, which a ``vmap`` over
seeds would turn into a select that pays for fresh worlds at every step.

Instructions (RLAdapter's conditioning): ``table`` [R, dim] holds the embedding of every
candidate instruction text and the state holds each env's current row, so the graph only
gathers. With ``instruction="random_subgoals"`` each env draws a uniformly random row at every
``instruction_interval``-th of its steps (all envs in step, from step 0 on: RLAdapter queries at
global steps 0, 100, 200, ...); the action of a step is chosen under, and stored with, the
instruction in force at that step. With ``instruction="none"`` the agent has no instruction
input.

Episodes: every finished episode's return, length and achievement flags come back from each
iteration ([T, K, N] arrays, ``done`` marking where one ended) for the host to write, and the
state counts, per seed, the episodes that ended within the budget and the episodes in which each
achievement was unlocked: enough for the Crafter score of all episodes so far.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from twosome_jax.guided_agent import GuidedAgent
from twosome_jax.seeds import init_seeds
from twosome_jax.ppo import PPOHyper, Transition, gae, make_optimizer, ppo_update_joint, set_learning_rate


@struct.dataclass
class GuidedState:
    params: Any  # {"actor", "critic"}, leading axis: seeds [K]
    opt_state: Any  # [K]
    env_state: Any  # the vector of all seeds' environments [K * N]
    obs: chex.Array  # [K, N, *obs_shape] the current observations
    done: chex.Array  # [K, N] the done flags that came with ``obs``
    instruction: chex.Array  # int32 [K, N]: each env's current row of the instruction table
    rng: chex.Array  # [K] keys: instructions, actions, minibatches
    env_rng: chex.Array  # one key: the shared vector of environments
    iteration: chex.Array  # int32: iterations done
    env_steps: chex.Array  # int32: env steps per seed so far
    episodes: chex.Array  # int32 [K]: episodes that ended within the budget
    episodes_with: chex.Array  # int32 [K, A]: of those, the ones that unlocked each achievement


def draw_instructions(t, interval: int, instruction, keys, rows: int):
    """Each env's instruction at its step ``t``: at every ``interval``-th step (0 included) a
    fresh uniformly random row of the table, per seed from ``keys`` [K]; the current one
    otherwise. ``instruction``: int32 [K, N]."""
    fresh = jax.vmap(lambda k: jax.random.randint(k, instruction.shape[1:], 0, rows))(keys)
    return jnp.where(t % interval == 0, fresh, instruction).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class GuidedTrainer:
    """Static parts of a run. Equal trainers share compilations (:data:`iteration`)."""

    agent: GuidedAgent
    vec: Any  # env.vector(num_seeds * num_envs)
    env_params: Any
    num_achievements: int
    num_seeds: int
    num_envs: int
    num_steps: int
    num_updates: int
    budget: int  # env steps per seed within which finished episodes count towards the totals
    gamma: float
    gae_lambda: float
    learning_rate: float
    anneal_lr: bool
    max_grad_norm: float
    hyper: PPOHyper
    redraw_instructions: bool  # random_subgoals: a fresh random row every instruction_interval steps
    instruction_interval: int
    bootstrap_truncation: bool

    @classmethod
    def from_config(cls, cfg, env, env_params, instruction_dim: int) -> "GuidedTrainer":
        obs_shape = tuple(env.observation_space(env_params).shape)
        agent = GuidedAgent(obs_shape=obs_shape, num_actions=env.num_actions, instruction_dim=instruction_dim,
                            hidden=tuple(cfg.hidden), activation=cfg.activation)
        options = {} if cfg.resets_per_step is None else {"resets_per_step": cfg.resets_per_step}
        hyper = PPOHyper(clip_coef=cfg.clip_coef, clip_vloss=cfg.clip_vloss, ent_coef=cfg.ent_coef,
                         vf_coef=cfg.vf_coef, norm_adv=cfg.norm_adv, target_kl=cfg.target_kl,
                         update_epochs=cfg.update_epochs, policy_num_minibatches=cfg.num_minibatches)
        return cls(agent=agent, vec=env.vector(cfg.num_seeds * cfg.num_envs, **options), env_params=env_params,
                   num_achievements=len(env.achievements), num_seeds=cfg.num_seeds, num_envs=cfg.num_envs,
                   num_steps=cfg.num_steps, num_updates=-(-cfg.total_timesteps // cfg.batch_size),
                   budget=cfg.total_timesteps, gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
                   learning_rate=cfg.learning_rate, anneal_lr=cfg.anneal_lr, max_grad_norm=cfg.max_grad_norm,
                   hyper=hyper, redraw_instructions=cfg.instruction == "random_subgoals",
                   instruction_interval=cfg.instruction_interval, bootstrap_truncation=cfg.bootstrap_truncation)

    @property
    def tx(self) -> optax.GradientTransformation:
        return make_optimizer("adam", self.learning_rate, self.max_grad_norm)

    def init_agents(self, key):
        """Parameters and optimizer states of all seeds: seed k's from ``split(key, K)[k]``."""
        params = init_seeds(self.agent.init, jax.random.split(key, self.num_seeds))
        return params, jax.vmap(self.tx.init)(params)

    def init_envs(self, key, params, opt_state) -> GuidedState:
        """The rest of a fresh state: the environments' first worlds, keys and counters."""
        k_env, k_run, k_vec = jax.random.split(key, 3)
        K, N = self.num_seeds, self.num_envs
        obs, env_state = self.vec.reset(k_env, self.env_params)
        return GuidedState(
            params=params, opt_state=opt_state, env_state=env_state,
            obs=obs.reshape((K, N) + obs.shape[1:]), done=jnp.zeros((K, N), bool),
            instruction=jnp.zeros((K, N), jnp.int32), rng=jax.random.split(k_run, K), env_rng=k_vec,
            iteration=jnp.int32(0), env_steps=jnp.int32(0), episodes=jnp.zeros((K,), jnp.int32),
            episodes_with=jnp.zeros((K, self.num_achievements), jnp.int32))

    # -- rollout --------------------------------------------------------------------------
    def _embed(self, table, instruction):
        return table[instruction] if self.agent.instruction_dim else None

    def rollout(self, table, state: GuidedState, steps: int | None = None):
        """``steps`` (default ``num_steps``) env steps of every env: ``(state, traj, episodes)``,
        arrays [steps, K, N, ...]."""
        agent, K, N = self.agent, self.num_seeds, self.num_envs
        steps = self.num_steps if steps is None else steps
        seeds = lambda a: a.reshape((K, N) + a.shape[1:])
        flat = lambda a: a.reshape((K * N,) + a.shape[2:])
        logits_fn = jax.vmap(agent.logits)
        value_fn = jax.vmap(agent.value)

        def step(carry, t):
            env_state, obs, done, instruction, rng, env_rng = carry
            keys = jax.vmap(lambda k: jax.random.split(k, 3))(rng)
            rng, k_instruction, k_action = keys[:, 0], keys[:, 1], keys[:, 2]
            if self.redraw_instructions:
                instruction = draw_instructions(t, self.instruction_interval, instruction, k_instruction,
                                                table.shape[0])
            embedding = self._embed(table, instruction)
            x = agent.inputs(obs, embedding)  # [K, N, input_dim]
            logits = logits_fn(state.params["actor"], x)
            value = value_fn(state.params["critic"], x)
            action = jax.vmap(jax.random.categorical)(k_action, logits).astype(jnp.int32)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
            env_rng, k_env = jax.random.split(env_rng)
            next_obs, env_state, reward, terminated, truncated, info = self.vec.step(
                k_env, env_state, flat(action), self.env_params)
            reward, truncated = seeds(reward).astype(jnp.float32), seeds(truncated)
            if self.bootstrap_truncation:  # stable-baselines3: r += gamma * V(final obs) at a time limit
                final = agent.inputs(seeds(info["final_observation"]), embedding)
                v_final = jax.lax.cond(jnp.any(truncated), lambda: value_fn(state.params["critic"], final),
                                       lambda: jnp.zeros((K, N), jnp.float32))
                reward = reward + self.gamma * jnp.where(truncated, v_final, 0.0)
            next_done = seeds(terminated) | truncated
            out = dict(x=x, action=action, logp=logp, value=value, reward=reward, done=done)
            episode = dict(done=seeds(info["returned_episode"]), ret=seeds(info["returned_episode_returns"]),
                           length=seeds(info["returned_episode_lengths"]),
                           achievements=seeds(info["returned_episode_achievements"]))
            return (env_state, seeds(next_obs), next_done, instruction, rng, env_rng), (out, episode)

        t0 = state.env_steps // N  # each env's steps so far
        carry = (state.env_state, state.obs, state.done, state.instruction, state.rng, state.env_rng)
        carry, (traj, episodes) = jax.lax.scan(step, carry, t0 + jnp.arange(steps))
        env_state, obs, done, instruction, rng, env_rng = carry
        state = state.replace(env_state=env_state, obs=obs, done=done, instruction=instruction, rng=rng,
                              env_rng=env_rng, env_steps=state.env_steps + N * steps)
        return state, traj, episodes

    # -- one iteration --------------------------------------------------------------------
    def iteration(self, table, state: GuidedState):
        """Rollout then one PPO update per seed: ``(state, metrics [K], episodes [T, K, N])``."""
        state, traj, episodes = self.rollout(table, state)
        state, metrics = self.update(table, state, traj, episodes)
        return state, metrics, episodes

    def update(self, table, state: GuidedState, traj, episodes):
        """GAE and one PPO update per seed on the iteration's ``num_steps`` transitions (``traj``,
        ``episodes``: [num_steps, K, N, ...], collected from the state ``state`` was rolled out
        to), and the episode counters: ``(state, metrics [K])``."""
        agent = self.agent
        frac = 1.0 - state.iteration.astype(jnp.float32) / self.num_updates if self.anneal_lr else 1.0
        lr = self.learning_rate * frac
        start_steps = state.env_steps - self.num_envs * self.num_steps
        next_x = agent.inputs(state.obs, self._embed(table, state.instruction))
        next_value = jax.vmap(agent.value)(state.params["critic"], next_x)
        advantages, returns = gae(traj["reward"], traj["value"], traj["done"], jnp.ones_like(traj["action"]),
                                  next_value, state.done, self.gamma, self.gae_lambda)

        def per_seed(a):  # [T, K, N, ...] -> [K, T * N, ...]
            a = jnp.moveaxis(a, 1, 0)
            return a.reshape((a.shape[0], -1) + a.shape[3:])

        batch = Transition(obs=per_seed(traj["x"]), action=per_seed(traj["action"]), logp=per_seed(traj["logp"]),
                           value=per_seed(traj["value"]), reward=per_seed(traj["reward"]),
                           done=per_seed(traj["done"]), macro_steps=per_seed(jnp.ones_like(traj["action"])),
                           critic_input=per_seed(traj["x"]))
        keys = jax.vmap(jax.random.split)(state.rng)
        rng, k_update = keys[:, 0], keys[:, 1]

        def update(params, opt_state, batch, advantages, returns, key):
            return ppo_update_joint(hyper=self.hyper, policy_logits_fn=agent.logits, value_fn=agent.value,
                                    params=params, opt_state=set_learning_rate(opt_state, lr), tx=self.tx,
                                    batch=batch, advantages=advantages, returns=returns, rng=key)

        params, opt_state, update_metrics = jax.vmap(update)(state.params, state.opt_state, batch,
                                                             per_seed(advantages), per_seed(returns), k_update)
        # episodes within the budget: the one ending at rollout step t ends at env step start + (t + 1) * N
        end_step = start_steps + (jnp.arange(self.num_steps) + 1) * self.num_envs
        counted = episodes["done"] & (end_step <= self.budget)[:, None, None]
        finished = episodes["done"]
        n = finished.sum(axis=(0, 2))
        safe = jnp.maximum(n, 1)
        state = state.replace(
            params=params, opt_state=opt_state, rng=rng, iteration=state.iteration + 1,
            episodes=state.episodes + counted.sum(axis=(0, 2)),
            episodes_with=state.episodes_with + (counted[..., None] & episodes["achievements"]).sum(axis=(0, 2)))
        metrics = dict(
            update_metrics, episodes=n,
            mean_return=jnp.where(n > 0, jnp.where(finished, episodes["ret"], 0.0).sum(axis=(0, 2)) / safe, jnp.nan),
            mean_episode_length=jnp.where(n > 0, jnp.where(finished, episodes["length"], 0).sum(axis=(0, 2)) / safe,
                                          jnp.nan),
            mean_reward=traj["reward"].mean(axis=(0, 2)), value_mean=traj["value"].mean(axis=(0, 2)),
            learning_rate=jnp.full((self.num_seeds,), lr, jnp.float32),
            params_finite=jax.vmap(lambda p: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x))
                                                                for x in jax.tree.leaves(p)])))(params))
        return state, metrics


def _init(trainer: GuidedTrainer, key) -> GuidedState:
    k_agents, k_envs = jax.random.split(key)
    params, opt_state = trainer.init_agents(k_agents)
    return trainer.init_envs(k_envs, params, opt_state)


# Jitted with the trainer static (equal trainers share one compilation per process).
init = jax.jit(_init, static_argnums=0)
"""``init(trainer, key) -> GuidedState``: a fresh state for all seeds, compiled."""
iteration = jax.jit(lambda trainer, table, state: trainer.iteration(table, state), static_argnums=0,
                    donate_argnums=2)
"""``iteration(trainer, table, state) -> (state, metrics, episodes)``, compiled, the state donated."""
collect = jax.jit(lambda trainer, table, state, steps: trainer.rollout(table, state, steps), static_argnums=(0, 3),
                  donate_argnums=2)
"""``collect(trainer, table, state, steps) -> (state, traj, episodes)``: ``steps`` env steps under
the state's instruction rows, compiled once per length, the state donated."""


def _update_segments(trainer: GuidedTrainer, table, state: GuidedState, segments):
    traj, episodes = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *segments)
    state, metrics = trainer.update(table, state, traj, episodes)
    return state, metrics


update = jax.jit(_update_segments, static_argnums=0, donate_argnums=2)
"""``update(trainer, table, state, segments) -> (state, metrics)``: GAE and the PPO update on
the iteration's segments (a list of :data:`collect`'s ``(traj, episodes)``, in time order,
``num_steps`` steps in all), compiled, the state donated."""
