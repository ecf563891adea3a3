"""nlp_eval's scoring, packed against per-choice sequences, side by side on real benchmark items.

    python benchmarks/nlp_eval_speed.py [--model smollm2-135m-instruct] [--limit 100] [--mmlu-limit 1]
                                        [--tasks arc_challenge,hellaswag,piqa,mmlu,mmlu_cloze] [--json PATH]

For each task the same items are bucketed into the same batches (``nlp_scoring.plan_batches``)
and scored by both implementations of ``scoring.action_logprobs``:

* ``packed``: each context once and every choice after it under the block mask, [N, P + S];
* ``naive``: one sequence per (item, choice), [N * A, P + L]: lm-eval's and Hugging Face's way.

Every batch shape is compiled first (one call each, timed as ``compile s``); then one pass over
all batches is timed per implementation, the two passes interleaved task by task so that load
from other processes hits both alike. ``tokens`` counts the padded positions the model runs
(N * (P + S) packed, N * A * (P + L) naive). The script also reports the largest difference
between the two implementations' log-likelihoods (they compute the same numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def timed_pass(score, batches):
    t = time.perf_counter()
    out = [score(b) for b in batches]
    return time.perf_counter() - t, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tasks", default="arc_challenge,hellaswag,piqa,mmlu,mmlu_cloze")
    ap.add_argument("--limit", type=int, default=100, help="items per task (first in file order)")
    ap.add_argument("--mmlu-limit", type=int, default=1, help="items per MMLU subject (57 subjects)")
    ap.add_argument("--json", default=None, help="also write the measurements here")
    args = ap.parse_args(argv)

    from twosome_jax.nlp_data import read_split, split_paths
    from twosome_jax.nlp_eval import load_policy
    from twosome_jax.nlp_scoring import encode_items, make_scorer, plan_batches
    from twosome_jax.nlp_tasks import TASKS, load_items, parse_tasks

    policy = load_policy(args.model)
    paths = split_paths()
    scorers = {impl: make_scorer(policy.graphdef, policy.base, policy.lora, implementation=impl)
               for impl in ("packed", "naive")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"model": args.model, "commit": commit, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "loadavg_before": os.getloadavg(), "tasks": {}}
    for name in parse_tasks(args.tasks):
        limit = args.mmlu_limit if name.startswith("mmlu") else args.limit
        items = load_items(TASKS[name], lambda split: read_split(paths[split], limit))
        encoded = encode_items(policy.tokenizer, items, policy.max_length)
        A = max(len(it.choices) for it in items)
        batches = plan_batches(encoded, A)
        row = {"items": len(items), "batches": len(batches)}
        shapes = {}
        for b in batches:
            shapes.setdefault((b.tokens.prompt_ids.shape, b.tokens.action_ids.shape, b.action_tokens_max), b)
        row["shapes"] = len(shapes)
        for impl, score in scorers.items():
            t = time.perf_counter()
            for b in shapes.values():
                score(b)
            row[f"{impl}_compile_s"] = time.perf_counter() - t
        lls = {}
        for impl, score in scorers.items():
            row[f"{impl}_s"], lls[impl] = timed_pass(score, batches)
        row["packed_tokens"] = sum(b.tokens.prompt_ids.shape[0] * (b.tokens.prompt_ids.shape[1] + b.action_tokens_max)
                                   for b in batches)
        row["naive_tokens"] = sum(int(np.prod(b.tokens.action_ids.shape[:2])) * (b.tokens.prompt_ids.shape[1]
                                                                               + b.tokens.action_ids.shape[2])
                                  for b in batches)
        mask = [b.tokens.action_mask & (b.rows >= 0)[:, None] for b in batches]
        row["max_abs_diff"] = max(float(np.max(np.abs(p - n)[m])) for p, n, m in zip(lls["packed"], lls["naive"], mask))
        row["naive_over_packed"] = row["naive_s"] / row["packed_s"]
        row["loadavg_after"] = os.getloadavg()
        report["tasks"][name] = row
        print(f"{name}: {row}", file=sys.stderr)

    lines = ["| task | items | shapes | packed tokens | naive tokens | packed s | naive s | naive/packed | "
             "packed items/s | compile s (packed / naive) | max abs diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["tasks"].items():
        lines.append(f"| {name} | {r['items']} | {r['shapes']} | {r['packed_tokens']:,} | {r['naive_tokens']:,} | "
                     f"{r['packed_s']:.1f} | {r['naive_s']:.1f} | **{r['naive_over_packed']:.2f}x** | "
                     f"{r['items'] / r['packed_s']:.2f} | {r['packed_compile_s']:.0f} / {r['naive_compile_s']:.0f} | "
                     f"{r['max_abs_diff']:.1e} |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
