"""The table of policy logits on every reachable observation, and the critic-feature cache, in
shared rows against one row each, side by side (SmolLM2, float32).

    python benchmarks/table_speed.py [--tasks tomato_salad food_preparation entertainment lettuce_tomato_salad]
                                     [--rounds 3] [--critic] [--json FILE]

The evaluation (and, where the reachable set is smaller than a rollout's visits, the rollout)
scores every reachable observation once and looks the logits up at each step
(``twosome_jax.evaluation.evaluation_table``). ``LLMAgent.table_logits`` scores them in shared
rows at their exact size (``trie_scoring``); ``policy_logits`` on the same observations scores
each in its own packed row. Both are jitted once, then timed in alternation for ``--rounds``
rounds (the best round is reported); the logits must agree. With ``--critic`` the same for the
critic-feature cache built before training (``LLMAgent.feature_cache``: the prompts alone in
shared rows) against ``scoring.critic_features`` on every prompt in its own row. Prints a
markdown table and writes the JSON (date, commit, machine: ``report.provenance``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import REPO, provenance  # noqa: E402

TASKS = ("tomato_salad", "food_preparation", "entertainment", "lettuce_tomato_salad")


def _timed(fn, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t, out


def measure(task: str, model: str, rounds: int, critic: bool) -> dict:
    from flax import nnx

    from twosome_jax.config import TrainConfig
    from twosome_jax.run import build
    from twosome_jax.scoring import critic_features
    from twosome_jax.trie_scoring import default_width, prompt_rows, trie_prompt_hidden

    setup = build(TrainConfig(model=model, task=task), critic=False)
    agent, frozen = setup.agent, setup.frozen
    actor = agent.init(jax.random.key(0))[0]
    obs = frozen["cache_obs"]
    P = agent.text_table.tokenize(obs[:1]).prompt_ids.shape[1]
    if critic:  # the prompts alone, in rows of default_width(P, 0), against one row of P each
        S, entries = 0, 0
        rows = prompt_rows(agent.text_table.tokenize(obs))
        states = lambda f, a: (agent.graphdef, nnx.State(f["base"]), nnx.State(a))
        fns = {"shared rows": jax.jit(lambda f, a: trie_prompt_hidden(
                   *states(f, a), agent.text_table.tokenize(f["cache_obs"]), False, rows)),
               "packed rows": jax.jit(lambda f, a: critic_features(*states(f, a), agent.text_table.tokenize(f["cache_obs"])))}
    else:
        S = agent.action_tokens_max
        rows, entries = agent.table_level
        fns = {"shared rows": jax.jit(agent.table_logits),
               "packed rows": jax.jit(lambda f, a: agent.policy_logits(f, a, f["cache_obs"]))}
    first, outs = {}, {}
    for name, fn in fns.items():
        first[name], outs[name] = _timed(fn, frozen, actor)
    got, want = np.asarray(outs["shared rows"]), np.asarray(outs["packed rows"])
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite), task
    max_diff = float(np.abs(got[finite] - want[finite]).max())
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], _timed(fn, frozen, actor)[0])
    width = default_width(P, S)
    return {"task": task, "what": "critic feature cache" if critic else "policy table",
            "observations": int(obs.shape[0]), "P": P, "S": S,
            "shared_slots": rows * width, "shared_rows": rows, "width": width,
            "packed_slots": int(obs.shape[0]) * (P + S), "predicted_tokens": entries,
            "shared_s": round(best["shared rows"], 3), "packed_s": round(best["packed rows"], 3),
            "speedup": round(best["packed rows"] / best["shared rows"], 2),
            "first_call_s": {k: round(v, 1) for k, v in first.items()}, "max_abs_logit_diff": max_diff}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--critic", action="store_true", help="time the critic-feature cache instead of the table")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    results = []
    for task in args.tasks:
        results.append(measure(task, args.model, args.rounds, args.critic))
        print(json.dumps(results[-1]), flush=True)
    prov = provenance()
    path = args.json or REPO / "benchmarks" / "results" / f"{'critic_cache' if args.critic else 'table'}_{prov['date_utc'][:10]}_{prov['commit'][:7]}.json"
    with open(path, "w") as f:
        json.dump({"model": args.model, "rounds": args.rounds, **prov, "results": results}, f, indent=1)
    print(f"\n{results[0]['what']}\n\n| task | reachable observations | packed rows: slots | shared rows: slots | packed s | shared s "
          "| speed-up |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['task']} | {r['observations']} | {r['packed_slots']:,} | {r['shared_slots']:,} "
              f"({r['shared_rows']} x {r['width']}) | {r['packed_s']} | {r['shared_s']} | {r['speedup']}x |")
    print(f"\n{path}")


if __name__ == "__main__":
    main()
