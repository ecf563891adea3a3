"""Evaluation of a policy from reset, the same for every environment family.

Training's periodic evaluation and ``python -m twosome_jax.evaluate`` both call
:func:`evaluate_policy`. Episodes run in parallel in one compiled loop; each episode has its
own key, split at every step for the action and the environment, so a stochastic environment
or policy gives independent episodes. An episode ends on gymnax's ``done`` from ``step_env``
(the environment is not reset inside the loop), and the loop stops once every episode has
ended, or after ``env.max_episode_steps`` decisions, by which every episode has ended.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from twosome_jax.agents import lookup_features
from twosome_jax.trainer import table_size

# Decisions an evaluation episode is assumed to take when choosing between scoring step by step
# and scoring the reachable set once (a trained tomato-salad policy takes 28 macro steps).
EVAL_STEPS_PER_EPISODE = 32


def evaluation_table(agent, frozen, actor, episodes: int):
    """The policy's logits on every reachable observation, or None where scoring step by step is
    cheaper (:func:`~twosome_jax.trainer.table_size` for ``episodes`` episodes of
    ``EVAL_STEPS_PER_EPISODE`` steps: tomato salad's 22 observations make a table even for one
    greedy episode, lettuce-tomato salad's 806 only for 26 episodes or more), scored in shared
    rows (``agent.table_logits``). Compute it once
    and pass it to every :func:`run_episodes` of the same adapters."""
    if not table_size(frozen, episodes * EVAL_STEPS_PER_EPISODE):
        return None
    return agent.table_logits(frozen, actor)


def run_episodes(agent, env, env_params, frozen, actor, key, *, episodes: int, greedy: bool, table=None):
    """Run ``episodes`` episodes from reset; per episode: ``finished``, ``success``, ``returns``
    and ``lengths`` (as the environment reports them in its episode info).

    ``table``: the policy's logits on ``frozen["cache_obs"]`` (:func:`evaluation_table`), looked
    up instead of scoring each step; None scores step by step."""
    k_reset, k_run = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env_params)
    split3 = jax.vmap(lambda k: jax.random.split(k, 3))

    def cond(carry):
        t, finished = carry[0], carry[4]
        return (t < env.max_episode_steps) & ~jnp.all(finished)

    def body(carry):
        t, env_state, obs, keys, finished, success, ret, length = carry
        keys, k_act, k_env = (x[:, 0] for x in jnp.split(split3(keys), 3, axis=1))
        if table is None:
            logits = agent.policy_logits(frozen, actor, obs)
        else:
            logits = lookup_features(frozen["cache_obs"], table, obs)
        action = jnp.argmax(logits, -1) if greedy else jax.vmap(jax.random.categorical)(k_act, logits)
        obs, env_state, _, done, info = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
            k_env, env_state, action.astype(jnp.int32), env_params)
        new = done & ~finished
        success = jnp.where(new, info["success"], success)
        ret = jnp.where(new, info["returned_episode_returns"], ret)
        length = jnp.where(new, info["returned_episode_lengths"], length)
        return t + 1, env_state, obs, keys, finished | done, success, ret, length

    zeros = jnp.zeros((episodes,))
    init = (jnp.int32(0), env_state, obs, jax.random.split(k_run, episodes), zeros.astype(bool),
            zeros.astype(bool), zeros, zeros.astype(jnp.int32))
    _, _, _, _, finished, success, ret, length = jax.lax.while_loop(cond, body, init)
    return dict(finished=finished, success=success, returns=ret, lengths=length)


def evaluate_policy(agent, env, env_params, frozen, actor, key, *, episodes: int) -> dict:
    """Greedy and sampled success rate, return and length of one policy (means, jittable).

    In a deterministic environment every greedy episode is the same episode, so one is run
    and the greedy figures are exact for any count; otherwise ``episodes`` are run."""
    table = evaluation_table(agent, frozen, actor, episodes)
    k_greedy, k_sampled = jax.random.split(key)
    run = lambda k, n, greedy: run_episodes(agent, env, env_params, frozen, actor, k, episodes=n, greedy=greedy,
                                            table=table)
    out = {}
    for name, result in (("greedy", run(k_greedy, 1 if env.deterministic else episodes, True)),
                         ("sampled", run(k_sampled, episodes, False))):
        out[f"success_rate_{name}"] = result["success"].mean()
        out[f"return_{name}"] = result["returns"].mean()
        out[f"length_{name}"] = result["lengths"].astype(jnp.float32).mean()
    return out
