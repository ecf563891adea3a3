"""How much of the machine's matmul rate one SmolLM2 training iteration's necessary work reaches.

    .venv/bin/python benchmarks/iteration_flops.py --tasks tomato_salad lettuce_tomato_salad

For each task, the default trainer (4 envs x 32 steps, the task's reference gamma) from the
fresh train state, as ``test_train.py`` times it. The necessary work of that iteration is
counted from its own batch:

* the rollout: each distinct observation it visits scored once, its prompt and the real tokens
  of its actions (a repeated observation needs no second pass: the adapters do not change
  during a rollout);
* the policy update: for each group the update computed (the policy steps taken, plus the one
  a target-KL stop discarded), its distinct observations forward and backward, their prompts'
  common prefixes read once (``trie_scoring``'s layout counts those tokens);
* no critic pass: its feature is a function of the observation, computed once per run.

FLOPs per token: 2 x the decoder's matmul weights (q, k, v, o, gate, up, down) plus attention
(2 x 2 x heads x head_dim x the keys the token attends to, its depth + 1) and, for each
predicted action token, 2 x hidden x vocabulary for the LM head. A backward pass with the base
frozen computes each matmul's input gradient only: as many FLOPs as the forward (LoRA's own
weight gradients, rank 8, are left out). The matmul rate is XLA's on this machine in the same
run: a float32 ``[2048, 576] x [576, 1536]`` product (an MLP projection at a typical update
size), best of 10. The iteration is timed as in ``test_train.py``, best of ``--repeats`` after
a compiling call. JSON to ``benchmarks/results/flops_DATE_COMMIT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import REPO, provenance  # noqa: E402
from train_setup import make_setup, variant  # noqa: E402


def best_of(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best, out


def matmul_rate(repeats: int = 10) -> float:
    a = jnp.asarray(np.random.default_rng(0).normal(size=(2048, 576)), jnp.float32)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(576, 1536)), jnp.float32)
    seconds, _ = best_of(jax.jit(jnp.dot), a, b, repeats=repeats)
    return 2 * 2048 * 576 * 1536 / seconds


def token_flops(config, depths, predicted: int) -> float:
    """Forward FLOPs of tokens at ``depths`` (each attends to depth + 1 keys), ``predicted`` of
    them read by the LM head."""
    D, F, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    H, K, hd = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    weights = D * H * hd + 2 * D * K * hd + H * hd * D + 3 * D * F
    depths = np.asarray(depths, np.float64)
    attention = 2 * 2 * H * hd * (depths + 1).sum()
    return L * (2 * weights * len(depths) + attention) + 2 * D * config.vocab_size * predicted


def observation_depths(tokens, i):
    """Depths of observation ``i``'s own sequence: its prompt, then each action after it."""
    plen = int(tokens.prompt_len[i])
    depths = list(range(plen))
    for n, ok in zip(np.asarray(tokens.action_len[i]), np.asarray(tokens.action_mask[i])):
        if ok:
            depths += list(range(plen, plen + int(n)))
    return depths, len(depths) - plen


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["tomato_salad", "lettuce_tomato_salad"])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from twosome_jax.config import load_config
    from twosome_jax.ppo import distinct_rows
    from twosome_jax.trie_scoring import default_width, trie_layout

    out = {"tasks": {}, **provenance()}
    rate = matmul_rate()
    out["matmul_flops_per_s"] = rate
    rows = []
    for task in args.tasks:
        gamma = load_config(REPO / "configs" / f"{task}.yaml").gamma
        cfg, setup, reach, S = make_setup(task=task, gamma=gamma)
        trainer, frozen = variant(cfg, setup, reach, S, "default")
        config = setup.model_config
        state0 = jax.jit(trainer.init)(jax.random.key(0))
        seconds, (_, metrics) = best_of(jax.jit(trainer.iteration), frozen, state0, repeats=args.repeats)
        state1, traj, _ = jax.jit(trainer.rollout)(frozen, state0)
        table = setup.agent.text_table
        B = trainer.num_envs * trainer.num_steps
        obs = np.asarray(traj.obs).reshape(B, -1)

        distinct = np.unique(obs, axis=0)
        tokens = jax.tree.map(np.asarray, table.tokenize(jnp.asarray(distinct)))
        rollout_flops = 0.0
        for i in range(len(distinct)):
            depths, predicted = observation_depths(tokens, i)
            rollout_flops += token_flops(config, depths, predicted)

        _, k_update = jax.random.split(state1.rng)
        hyper = trainer.hyper
        key = jax.random.split(k_update, hyper.update_epochs)[0]
        perm = np.asarray(jax.random.permutation(key, B))
        group = trainer.policy_group_size
        ran = int(metrics["policy_steps"]) + int(bool(metrics["early_stopped"]))
        update_flops, trie_tokens, alone_tokens = 0.0, [], []
        for g in range(ran):
            rows_obs = jnp.asarray(obs[perm[g * group:(g + 1) * group]])
            idx, _, n = distinct_rows(rows_obs)
            toks = table.tokenize(rows_obs[idx])
            P = toks.prompt_ids.shape[1]
            lay = jax.tree.map(np.asarray, trie_layout(toks, n, S, default_width(P, S)))
            stored = lay["seg"] >= -1
            depths = lay["positions"][stored]
            predicted = int((lay["seg"] >= 0).sum())
            update_flops += 2 * token_flops(config, depths, predicted)
            trie_tokens.append(int(stored.sum()))
            alone_tokens.append(sum(len(observation_depths(jax.tree.map(np.asarray, toks), i)[0]) for i in range(int(n))))
        total = rollout_flops + update_flops
        achieved = total / seconds
        out["tasks"][task] = dict(
            seconds=seconds, rollout_distinct=len(distinct), groups_computed=ran,
            group_trie_tokens=trie_tokens, group_tokens_alone=alone_tokens,
            rollout_flops=rollout_flops, update_flops=update_flops, necessary_flops=total,
            achieved_flops_per_s=achieved, fraction_of_matmul_rate=achieved / rate)
        rows.append((task, seconds, len(distinct), ran, np.mean(trie_tokens), np.mean(alone_tokens),
                     total / 1e12, achieved / 1e9, achieved / rate))
    path = REPO / "benchmarks" / "results" / f"flops_{out['date_utc'][:10]}_{out['commit'][:7]}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"XLA float32 matmul rate: {rate / 1e9:.1f} GFLOP/s")
    print("| task | s / iteration | rollout distinct obs | update groups | tokens per group (shared / alone) "
          "| necessary TFLOP | GFLOP/s reached | of the matmul rate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for task, s, nd, g, tt, ta, tf, gf, frac in rows:
        print(f"| {task} | {s:.1f} | {nd} | {g} | {tt:,.0f} / {ta:,.0f} | {tf:.2f} | {gf:.1f} | {frac:.0%} |")
    print(f"written {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
