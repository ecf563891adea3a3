"""Where the time of one training iteration goes (SmolLM2, tomato salad, 4 envs x 32 steps).

    python benchmarks/profile_iteration.py [--model smollm2-135m-instruct] [--variants default no-trie]

Times the jitted pieces separately (best of --repeats after a compile call):
the whole iteration; the rollout alone (32 steps of scoring + critic input + env); one
rollout step's policy scoring (4 observations); the rollout's table (the policy on every
reachable observation, when the variant scores one); the environment alone (32 steps x 4 envs);
the critic feature of 4 observations by the LLM (what the cache saves); the policy
forward+backward at 4 observations (one reference minibatch) and, forward+backward and forward
alone, at one policy-update group of
the fresh-state rollout, scored as the update scores it (its distinct observations first, their
count passed on), the group of median distinct count among 200 random groups (the update
shuffles the batch, then takes groups of ``policy_group_size`` rows); it also reports their
mean count. The update's remainder (GAE, critic MLP updates, optimizer) is the iteration minus
the rollout minus the policy forward+backward passes. The JSON on stdout also records the date, commit and machine
(``report.provenance``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import provenance  # noqa: E402
from train_setup import make_setup, variant  # noqa: E402


def best_of(fn, *args, repeats=2):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best, first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--variants", nargs="+", default=["default", "no-trie"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-iteration", action="store_true")
    ap.add_argument("--task", default="tomato_salad")
    args = ap.parse_args()
    from twosome_jax.ppo import distinct_rows, policy_loss
    from twosome_jax.scoring import critic_features

    cfg, setup, reach, S = make_setup(args.model, task=args.task)
    out = {"model": args.model, "jax": jax.__version__, "action_tokens_max": S,
           **provenance()}
    n, T = cfg.num_envs, cfg.num_steps
    env, params = setup.env, setup.env_params
    for name in args.variants:
        trainer, frozen = variant(cfg, setup, reach, S, name)
        agent = trainer.agent
        state = jax.jit(trainer.init)(jax.random.key(0))
        r = {}
        if not args.skip_iteration:
            r["iteration"] = best_of(jax.jit(trainer.iteration), frozen, state, repeats=args.repeats)
        r["rollout"] = best_of(jax.jit(lambda f, s: trainer.rollout(f, s)[1]), frozen, state, repeats=args.repeats)
        r["policy_fwd_4obs"] = best_of(jax.jit(agent.policy_logits), frozen, state.actor, state.obs,
                                       repeats=3 * args.repeats)
        if trainer.policy_table_size(frozen):
            r["policy_fwd_table"] = best_of(jax.jit(agent.policy_logits), frozen, state.actor, frozen["cache_obs"],
                                            repeats=args.repeats)

        def grad(actor, frozen, obs, count=None, level=None):
            k = obs.shape[0]

            def loss(actor):
                logits = agent.policy_logits(frozen, actor, obs, count=count, level=level)
                l, _ = policy_loss(logits, jnp.zeros(k, jnp.int32), jnp.full(k, -1.6), jnp.arange(k, dtype=jnp.float32),
                                   clip_coef=0.2, ent_coef=0.01, norm_adv=True)
                return l
            return jax.grad(loss)(actor)

        grad = jax.jit(grad, static_argnames="level")
        r["policy_fwdbwd_4obs"] = best_of(grad, state.actor, frozen, state.obs, repeats=3 * args.repeats)
        obs = np.asarray(jax.jit(lambda f, s: trainer.rollout(f, s)[1].obs)(frozen, state)).reshape(n * T, -1)
        rng = np.random.default_rng(0)
        G = trainer.policy_group_size
        groups = [obs[rng.permutation(n * T)[:G]] for _ in range(200)]
        counts = [len(np.unique(g, axis=0)) for g in groups]
        # a group of the median distinct count, as the update scores it (distinct rows first)
        group = jnp.asarray(groups[int(np.argsort(counts)[len(counts) // 2])])
        rows, _, count = distinct_rows(group)
        levels, level = agent.update_level(frozen, group[rows], count)
        level = None if level is None else int(level)
        out.setdefault(name, {})["timed_group_level"] = [levels, level]
        r["policy_fwdbwd_group"] = best_of(functools.partial(grad, level=level), state.actor, frozen, group[rows],
                                           count, repeats=args.repeats)
        fwd = jax.jit(lambda a, f, o, c: agent.policy_logits(f, a, o, count=c, level=level))
        r["policy_fwd_group"] = best_of(fwd, state.actor, frozen, group[rows], count, repeats=args.repeats)
        out[name].update({k: {"best_s": round(v[0], 4), "first_call_s": round(v[1], 2)} for k, v in r.items()})
        out[name]["group_size"] = G
        out[name]["fresh_group_distinct_mean"] = float(np.mean(counts))
        out[name]["timed_group_distinct"] = int(count)

    def env_only(env_state):
        def body(c, k):
            _, c, *_ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(k, n), c,
                                                                   jnp.full(n, 2, jnp.int32), params)
            return c, None
        return jax.lax.scan(body, env_state, jax.random.split(jax.random.key(0), T))[0]

    state = jax.jit(trainer.init)(jax.random.key(0))
    base, lora = agent._states(setup.frozen, state.actor)
    crit = jax.jit(lambda b, obs: critic_features(agent.graphdef, b, lora, agent.text_table.tokenize(obs)))
    common = {"env_32steps_4envs": best_of(jax.jit(env_only), state.env_state, repeats=5),
              "critic_feature_4obs_llm": best_of(crit, base, state.obs, repeats=3 * args.repeats),
              "tokenize_4obs": best_of(jax.jit(agent.text_table.tokenize), state.obs, repeats=10)}
    out["common"] = {k: {"best_s": round(v[0], 4), "first_call_s": round(v[1], 2)} for k, v in common.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
