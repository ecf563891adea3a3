"""PPO as TWOSOME's reference runs it, as pure functions for one compiled update.

What is reproduced from the reference (docs/reference-notes.md §3 and its quirks):

* GAE over macro actions: a transition that took ``k`` primitive steps is discounted by
  ``gamma ** k``; lambda is not raised to ``k``. The environment already discounts rewards
  inside a macro at 0.99, so returns are discounted twice (Q3, reproduced).
* A value phase first (``value_num_minibatches`` Adam steps on the clipped value loss), then a
  policy phase over the same permutation: minibatches in groups of
  ``gradient_accumulation_steps`` whose gradients are summed (each loss divided by the group
  size) into one AdamW step. The mean approximate KL of a group is checked before its step;
  above ``target_kl`` the group's gradients are dropped and the policy phase ends for this
  update. Advantages are normalised within each policy minibatch (Q18, reproduced).
* Fixed: gradients of the actor and the critic are clipped separately (Q10).

The reference's PPO *baseline* (``ppo_raw_env.py``, CleanRL's ``ppo.py``) updates differently:
one Adam over actor and critic together, each minibatch one step on
``pg_loss - ent_coef * entropy + vf_coef * value_loss`` with the gradient norm clipped over
both, ``update_epochs`` epochs of ``policy_num_minibatches`` minibatches, and the target KL
(when set) checked on the last minibatch after each epoch. :func:`ppo_update_joint` is that
update; the training config selects it with ``ppo_update: joint``.

``lax.cond`` skips the groups after an early stop (and every group during a critic warm-up),
so a stopped update costs nothing more.

A group's policy logits are computed once per *distinct* observation in the group (exact: the
logits are a function of the observation). Environments revisit few observations (tomato salad
has 22 in all), so this is most of the update's LLM work saved. The LLM agent scores them in
shared rows, at the smallest of a few static sizes that holds their real tokens
(``trie_scoring``); ``lax.switch`` picks it.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class Transition:
    """One macro step of every environment (leading axes [T, N] in a rollout)."""

    obs: chex.Array  # int32 [obs_dim], the observation the action was chosen on
    action: chex.Array  # int32
    logp: chex.Array  # float32, log-prob of the action under the behaviour policy
    value: chex.Array  # float32
    reward: chex.Array  # float32, the macro reward (already discounted inside the macro)
    done: chex.Array  # bool, the done flag that came with ``obs``
    macro_steps: chex.Array  # int32, primitive steps the macro took (the SMDP exponent)
    critic_input: chex.Array  # float32 [F], what the critic reads (kept: the base is frozen)


def gae(rewards, values, dones, macro_steps, next_value, next_done, gamma: float, lam: float):
    """Generalised advantage estimates over macro actions; arrays are [T, ...].

    ``dones[t]`` is the done flag that came with the observation at ``t`` (CleanRL's layout);
    ``next_value``/``next_done`` belong to the observation after the last step.
    Returns ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    discounts = jnp.power(gamma, macro_steps.astype(jnp.float32))
    next_values = jnp.concatenate([values[1:], next_value[None]], axis=0)
    next_nonterminal = 1.0 - jnp.concatenate([dones[1:], next_done[None]], axis=0).astype(jnp.float32)

    def backward(carry, x):
        reward, value, next_v, nonterminal, discount = x
        delta = reward + discount * next_v * nonterminal - value
        advantage = delta + discount * lam * nonterminal * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(next_value),
        (rewards, values, next_values, next_nonterminal, discounts), reverse=True)
    return advantages, advantages + values


def categorical_entropy(logits):
    """Entropy of a categorical given logits that may hold -inf for actions not offered.

    ``logp`` is replaced by 0 where ``p`` is 0 *before* the product: ``where(p > 0, p * logp, 0)``
    has the right value but a NaN gradient (the unselected branch's 0 * -inf)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    return -jnp.sum(p * jnp.where(p > 0, logp, 0.0), axis=-1)


def distinct_rows(x):
    """``(rows, inverse, n)`` for ``x`` [N, D]: ``x[rows[:n]]`` are its distinct rows in order of
    first appearance (``rows[n:]`` is padding, 0), and ``x[rows[inverse]] == x``."""
    n_rows = x.shape[0]
    first = jnp.argmax(jnp.all(x[:, None, :] == x[None, :, :], axis=-1), axis=1)  # first equal row
    is_first = first == jnp.arange(n_rows)
    rows = jnp.nonzero(is_first, size=n_rows, fill_value=0)[0]
    slot = jnp.cumsum(is_first) - 1
    return rows, slot[first], is_first.sum()


def grad_over_distinct(loss_of_logits, policy_logits_fn, params, obs, level_fn=None):
    """``value_and_grad`` (with aux) of ``loss_of_logits(policy_logits_fn(params, obs))``,
    scoring each distinct observation of ``obs`` [N, ...] once.

    ``policy_logits_fn(params, rows, count, level)`` scores ``rows`` [N, ...] of which only the
    first ``count`` (traced) are real: the distinct observations, the rest padding whose logits
    are never read. ``level_fn(rows, count) -> (levels, level)``: how many static sizes the
    agent may score them at, and the traced index of the smallest that holds them; each size
    is a ``lax.switch`` branch that takes its own gradient, so only the chosen size's
    activations are ever held (a switch around the forward alone would keep every branch's
    residuals for the backward pass). Without it, ``level`` is None: the agent's full size.
    Under ``vmap`` a switch runs every branch, so batched callers pass no ``level_fn``."""
    rows, inverse, n = distinct_rows(obs)
    distinct = obs[rows]

    def at(level):
        def branch(params):
            return jax.value_and_grad(
                lambda p: loss_of_logits(policy_logits_fn(p, distinct, n, level)[inverse]), has_aux=True)(params)
        return branch

    levels, level = level_fn(distinct, n) if level_fn is not None else (1, None)
    if levels == 1:
        return at(None if level is None else 0)(params)
    return jax.lax.switch(level, [at(k) for k in range(levels)], params)


def policy_loss(logits, actions, old_logp, advantages, *, clip_coef, ent_coef, norm_adv):
    """Clipped surrogate minus the entropy bonus, and diagnostics."""
    logp_all = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.take_along_axis(logp_all, actions[:, None], axis=-1)[:, 0]
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    if norm_adv:
        advantages = (advantages - advantages.mean()) / (jnp.std(advantages, ddof=1) + 1e-8)
    pg = jnp.maximum(-advantages * ratio, -advantages * jnp.clip(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
    entropy = categorical_entropy(logits).mean()
    approx_kl = jnp.mean((ratio - 1) - log_ratio)
    clipfrac = jnp.mean((jnp.abs(ratio - 1.0) > clip_coef).astype(jnp.float32))
    return pg - ent_coef * entropy, dict(pg_loss=pg, entropy=entropy, approx_kl=approx_kl, clipfrac=clipfrac)


def value_loss(values, old_values, returns, *, clip_coef, clip_vloss):
    """The reference's clipped value loss, ``0.5 * mean(max(unclipped, clipped))``."""
    unclipped = (values - returns) ** 2
    if not clip_vloss:
        return 0.5 * unclipped.mean()
    clipped = (old_values + jnp.clip(values - old_values, -clip_coef, clip_coef) - returns) ** 2
    return 0.5 * jnp.maximum(unclipped, clipped).mean()


def make_optimizer(kind: str, learning_rate: float, max_grad_norm: float):
    """Global-norm clipping then Adam(W) with eps 1e-5; the learning rate is a hyperparameter
    in the state so the update can anneal it (``set_learning_rate``)."""
    base = {"adamw": lambda lr: optax.adamw(lr, eps=1e-5, weight_decay=0.0),
            "adam": lambda lr: optax.adam(lr, eps=1e-5)}[kind]

    def chain(learning_rate):
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), base(learning_rate))

    return optax.inject_hyperparams(chain)(learning_rate=learning_rate)


def set_learning_rate(opt_state, learning_rate):
    hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
    return opt_state._replace(hyperparams=hyperparams)


@struct.dataclass
class PPOHyper:
    """The static PPO settings an update needs (a subset of the training config)."""

    clip_coef: float = struct.field(pytree_node=False, default=0.2)
    clip_vloss: bool = struct.field(pytree_node=False, default=True)
    ent_coef: float = struct.field(pytree_node=False, default=0.01)
    vf_coef: float = struct.field(pytree_node=False, default=0.5)
    norm_adv: bool = struct.field(pytree_node=False, default=True)
    target_kl: float | None = struct.field(pytree_node=False, default=0.02)
    update_epochs: int = struct.field(pytree_node=False, default=1)
    policy_num_minibatches: int = struct.field(pytree_node=False, default=32)
    value_num_minibatches: int = struct.field(pytree_node=False, default=4)
    gradient_accumulation_steps: int = struct.field(pytree_node=False, default=8)


def ppo_update(
    *,
    hyper: PPOHyper,
    policy_logits_fn: Callable[[Any, chex.Array], chex.Array],
    value_fn: Callable[[Any, chex.Array], chex.Array],
    actor_params, critic_params, actor_opt, critic_opt,
    actor_tx: optax.GradientTransformation, critic_tx: optax.GradientTransformation,
    batch: Transition, advantages, returns, rng, train_policy=True, policy_level_fn=None,
):
    """One PPO update on a flat batch [B, ...]. Returns new params, optimizer states, metrics.

    ``policy_logits_fn(actor_params, obs, count, level) -> [M, A]`` and ``policy_level_fn``
    (see ``grad_over_distinct``) and ``value_fn(critic_params, critic_input) -> [M]`` are the
    agent. ``train_policy`` False (critic warm-up) keeps the actor fixed; the Python constant
    False (an agent that never learns) skips the policy phase.
    """
    B = batch.action.shape[0]
    accum = hyper.gradient_accumulation_steps
    n_pol, n_val = hyper.policy_num_minibatches, hyper.value_num_minibatches
    pol_size, val_size = B // n_pol, B // n_val
    groups = n_pol // accum

    def value_step(carry, idx):
        critic_params, critic_opt = carry

        def loss_fn(params):
            v = value_fn(params, batch.critic_input[idx])
            return hyper.vf_coef * value_loss(v, batch.value[idx], returns[idx],
                                              clip_coef=hyper.clip_coef, clip_vloss=hyper.clip_vloss)

        loss, grads = jax.value_and_grad(loss_fn)(critic_params)
        updates, critic_opt = critic_tx.update(grads, critic_opt, critic_params)
        return (optax.apply_updates(critic_params, updates), critic_opt), loss

    def policy_group(carry, group_idx):
        actor_params, actor_opt, stopped = carry

        def compute(_):
            def loss_of_logits(logits):
                logits = logits.reshape(group_idx.shape + logits.shape[1:])

                def minibatch(logits, idx):
                    return policy_loss(logits, batch.action[idx], batch.logp[idx], advantages[idx],
                                       clip_coef=hyper.clip_coef, ent_coef=hyper.ent_coef, norm_adv=hyper.norm_adv)

                losses, infos = jax.vmap(minibatch)(logits, group_idx)
                return losses.sum() / accum, infos

            (_, infos), grads = grad_over_distinct(loss_of_logits, policy_logits_fn, actor_params,
                                                   batch.obs[group_idx.reshape(-1)], policy_level_fn)
            kl = infos["approx_kl"].mean()
            stop = (kl > hyper.target_kl) if hyper.target_kl is not None else jnp.bool_(False)

            def step(_):
                updates, new_opt = actor_tx.update(grads, actor_opt, actor_params)
                return optax.apply_updates(actor_params, updates), new_opt

            new_params, new_opt = jax.lax.cond(stop, lambda _: (actor_params, actor_opt), step, None)
            metrics = jax.tree.map(jnp.mean, infos)
            return (new_params, new_opt, stop), dict(metrics, approx_kl=kl, ran=jnp.float32(1.0),
                                                      stepped=(~stop).astype(jnp.float32))

        def skip(_):
            empty = dict(pg_loss=0.0, entropy=0.0, approx_kl=0.0, clipfrac=0.0, ran=0.0, stepped=0.0)
            return (actor_params, actor_opt, stopped), jax.tree.map(jnp.float32, empty)

        return jax.lax.cond(stopped | jnp.logical_not(train_policy), skip, compute, None)

    def epoch(carry, key):
        actor_params, actor_opt, critic_params, critic_opt, stopped = carry
        perm = jax.random.permutation(key, B)
        (critic_params, critic_opt), v_losses = jax.lax.scan(
            value_step, (critic_params, critic_opt), perm.reshape(n_val, val_size))
        if train_policy is False:  # static (SayCan): no policy phase is traced at all
            pol = {k: jnp.zeros((groups,), jnp.float32)
                   for k in ("pg_loss", "entropy", "approx_kl", "clipfrac", "ran", "stepped")}
        else:
            (actor_params, actor_opt, stopped), pol = jax.lax.scan(
                policy_group, (actor_params, actor_opt, stopped), perm.reshape(groups, accum, pol_size))
        return (actor_params, actor_opt, critic_params, critic_opt, stopped), (v_losses.mean(), pol)

    keys = jax.random.split(rng, hyper.update_epochs)
    init = (actor_params, actor_opt, critic_params, critic_opt, jnp.bool_(False))
    (actor_params, actor_opt, critic_params, critic_opt, stopped), (v_loss, pol) = jax.lax.scan(epoch, init, keys)
    ran = jnp.maximum(pol["ran"].sum(), 1.0)
    metrics = {k: pol[k].sum() / ran for k in ("pg_loss", "entropy", "approx_kl", "clipfrac")}
    metrics.update(value_loss=v_loss.mean(), policy_steps=pol["stepped"].sum(), early_stopped=stopped)
    return actor_params, actor_opt, critic_params, critic_opt, metrics


def ppo_update_joint(
    *,
    hyper: PPOHyper,
    policy_logits_fn: Callable[[Any, chex.Array], chex.Array],
    value_fn: Callable[[Any, chex.Array], chex.Array],
    params, opt_state, tx: optax.GradientTransformation,
    batch: Transition, advantages, returns, rng,
):
    """CleanRL's PPO update on a flat batch [B, ...]: ``params`` is ``{"actor", "critic"}`` with
    one optimizer state. Returns new params, optimizer state and metrics (means over the
    minibatch steps taken)."""
    B = batch.action.shape[0]
    n_mb = hyper.policy_num_minibatches
    size = B // n_mb

    def minibatch(carry, idx):
        params, opt_state = carry

        def loss_fn(params):
            logits = policy_logits_fn(params["actor"], batch.obs[idx])
            pol, info = policy_loss(logits, batch.action[idx], batch.logp[idx], advantages[idx],
                                    clip_coef=hyper.clip_coef, ent_coef=hyper.ent_coef, norm_adv=hyper.norm_adv)
            v = value_fn(params["critic"], batch.critic_input[idx])
            v_loss = value_loss(v, batch.value[idx], returns[idx], clip_coef=hyper.clip_coef,
                                clip_vloss=hyper.clip_vloss)
            return pol + hyper.vf_coef * v_loss, dict(info, value_loss=v_loss)

        (_, info), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), info

    def epoch(carry, key):
        params, opt_state, stopped = carry

        def run(_):
            perm = jax.random.permutation(key, B)
            (new_params, new_opt), infos = jax.lax.scan(minibatch, (params, opt_state), perm.reshape(n_mb, size))
            kl = infos["approx_kl"][-1]
            stop = (kl > hyper.target_kl) if hyper.target_kl is not None else jnp.bool_(False)
            sums = {k: v.sum() for k, v in infos.items()}
            return (new_params, new_opt, stop), dict(sums, steps=jnp.float32(n_mb))

        def skip(_):
            zeros = dict.fromkeys(("pg_loss", "entropy", "approx_kl", "clipfrac", "value_loss", "steps"), 0.0)
            return (params, opt_state, stopped), jax.tree.map(jnp.float32, zeros)

        return jax.lax.cond(stopped, skip, run, None)

    keys = jax.random.split(rng, hyper.update_epochs)
    (params, opt_state, stopped), sums = jax.lax.scan(epoch, (params, opt_state, jnp.bool_(False)), keys)
    steps = jnp.maximum(sums["steps"].sum(), 1.0)
    metrics = {k: sums[k].sum() / steps for k in ("pg_loss", "entropy", "approx_kl", "clipfrac", "value_loss")}
    metrics.update(policy_steps=sums["steps"].sum(), early_stopped=stopped)
    return params, opt_state, metrics
