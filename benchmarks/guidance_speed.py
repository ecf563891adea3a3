"""One guidance query round's language-model work, timed with and without the cached system turns.

The analyst and the decision model's scoring of 31 sub-goals, each with its cached system turn
against the same work over the full prompts.

    python benchmarks/guidance_speed.py [--model smollm2-135m-instruct] [--envs 16] [--new-tokens 64] \\
        [--rounds 3] [--json FILE]

The workload is one round for ``--envs`` environments: adapter prompts (``guidance.adapter_prompt``)
of situations drawn with seed 0, the adapter LM with fresh LoRA adapters on q/v (r 64, alpha 16,
as RLAdapter's SFT attaches them), greedy decoding so that both sides generate the same tokens:

* ``analyst_prefix``: ``AdapterLM.analyses(greedy=True)``: the system turn's keys and values
  come from the prefix cache built once, the decode reads only what follows it;
* ``analyst_full``: ``generate`` over the whole prompts (padded to the same multiple of 32), no
  prefix cache, decoded the same way; the run checks that the texts are equal;
* ``prefill_prefix``, ``prefill_full``: the same two with one new token, i.e. the prompt reading
  alone, where the cached system turn saves its work (on a CPU the 64 decode steps of a round
  take most of its time, and they are the same on both sides);
* ``decision_prefix``, ``decision_full``: ``ScoringDecisionModel.scores`` on the decision prompts
  holding those analyses (the same base weights, adapters off), with the decision system turn
  cached (the default) and with ``cache_prefix=False``; the run records the largest difference
  of their scores and whether their greedy picks are equal.

Each side runs once untimed (compiling its shapes: ``first s``), then the timed rounds alternate
between the sides so that load from other processes hits them alike; the table gives the median
round. ``--json`` also records the date, commit and machine (``report.provenance``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import provenance  # noqa: E402

SEES = ["grass", "tree", "water", "stone", "sand", "coal", "cow", "zombie", "table", "plant"]
ITEMS = ["sapling", "wood", "stone", "coal", "wood_pickaxe"]
ACTIONS = ["noop", "move_left", "do", "sleep", "place_table", "make_wood_pickaxe"]


def situations(n, seed=0):
    """n (sees, status, last action, previous instruction, score) tuples, varied in length."""
    from envs_jax.crafter.constants import SUBGOALS

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sees = ", ".join(sorted(rng.choice(SEES, int(rng.integers(1, 6)), replace=False), key=SEES.index))
        items = [f"{int(rng.integers(1, 10))} {k}" for k in ("health", "food", "drink", "energy")]
        items += [f"{int(rng.integers(1, 5))} {k}" for k in rng.choice(ITEMS, int(rng.integers(0, 3)), replace=False)]
        inst = ", ".join(SUBGOALS[i] for i in sorted(rng.choice(len(SUBGOALS), 3, replace=False))) + "."
        out.append((sees, ", ".join(items), str(rng.choice(ACTIONS)), inst, float(rng.uniform())))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct", help="model spec (model.load_model)")
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the measurements here")
    args = ap.parse_args(argv)

    import jax

    from twosome_jax import guidance as G
    from twosome_jax.model import LoRAConfig, load_model, split_model
    from twosome_jax.model.generate import generate, pad_prompts
    from envs_jax.text import round_up

    config, model, tok = load_model(args.model, lora=LoRAConfig(rank=64, alpha=16.0, targets=("q_proj", "v_proj")))
    analyst = G.AdapterLM(model, tok, max_new_tokens=args.new_tokens)
    reader = G.AdapterLM(model, tok, max_new_tokens=1)
    decision = G.ScoringDecisionModel(model, tok)
    decision_full = G.ScoringDecisionModel(model, tok, cache_prefix=False)
    graphdef, base, lora = split_model(model)
    cases = situations(args.envs)
    prompts = [G.adapter_prompt(*c) for c in cases]
    full_ids = [tok(p)["input_ids"] for p in prompts]
    ids, lens = pad_prompts(full_ids, tok.pad_token_id, round_up(max(len(x) for x in full_ids), 32))

    def full(new_tokens):
        out = generate(graphdef, base, lora, ids, lens, max_new_tokens=new_tokens, eos_id=analyst.eos_ids,
                       pad_id=analyst.pad_id)
        return [tok.decode(t[:n], skip_special_tokens=True).strip()
                for t, n in zip(np.asarray(out.tokens), np.asarray(out.lengths))]

    texts = {}
    sides = {"analyst_prefix": lambda: analyst.analyses(prompts, greedy=True),
             "analyst_full": lambda: full(args.new_tokens),
             "prefill_prefix": lambda: reader.analyses(prompts, greedy=True), "prefill_full": lambda: full(1)}
    report = {**provenance(), "model": args.model, "jax": jax.__version__, "backend": jax.default_backend(),
              "envs": args.envs, "new_tokens": args.new_tokens, "rounds": args.rounds,
              "prefix_tokens": len(analyst.prefix_ids), "prompt_tokens": [len(x) for x in full_ids], "sides": {}}
    for name, run in sides.items():
        t = time.perf_counter()
        texts[name] = run()
        report["sides"][name] = {"first_s": time.perf_counter() - t}
    report["same_analyses"] = texts["analyst_prefix"] == texts["analyst_full"] and texts["prefill_prefix"] == texts["prefill_full"]
    report["analysis_tokens"] = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in texts["analyst_prefix"]]
    decision_prompts = [G.decision_prompt(*c[:4], a) for c, a in zip(cases, texts["analyst_prefix"])]
    report["decision_prompt_tokens"] = [len(tok(p)["input_ids"]) for p in decision_prompts]
    report["decision_prefix_tokens"] = len(decision.prefix_ids)
    scores = {}
    for name, model_ in (("decision_prefix", decision), ("decision_full", decision_full)):
        sides[name] = functools.partial(model_.scores, decision_prompts)
        t = time.perf_counter()
        scores[name] = sides[name]()
        report["sides"][name] = {"first_s": time.perf_counter() - t}
    report["decision_scores_max_abs_diff"] = float(np.abs(scores["decision_prefix"] - scores["decision_full"]).max())
    report["same_greedy_picks"] = bool((G.pick_subgoals(scores["decision_prefix"], greedy=True)
                                        == G.pick_subgoals(scores["decision_full"], greedy=True)).all())

    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    for name in sides:
        report["sides"][name].update(s=statistics.median(times[name]), all_s=times[name])
    report["loadavg_after"] = list(os.getloadavg())
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1), file=sys.stderr)

    s = {k: v["s"] for k, v in report["sides"].items()}
    print("| envs | what | prefix tokens | prompt tokens | full prompts s | cached prefix s | full / cached | "
          "same output |\n|---:|---|---:|---|---:|---:|---:|---|")
    span = lambda x: f"{min(x)}-{max(x)}"
    rows = ((f"analyst, {args.new_tokens} new tokens", report["prefix_tokens"], report["prompt_tokens"],
             "analyst_full", "analyst_prefix", report["same_analyses"]),
            ("analyst, 1 new token", report["prefix_tokens"], report["prompt_tokens"], "prefill_full", "prefill_prefix",
             report["same_analyses"]),
            ("decision, 31 sub-goals", report["decision_prefix_tokens"], report["decision_prompt_tokens"],
             "decision_full", "decision_prefix",
             f"picks {report['same_greedy_picks']}, scores within {report['decision_scores_max_abs_diff']:.1e}"))
    for what, q, plen, a, b, same in rows:
        print(f"| {args.envs} | {what} | {q} | {span(plen)} | {s[a]:.2f} | {s[b]:.2f} | **{s[a] / s[b]:.2f}x** | {same} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
