"""Generation tokens/s with the KV cache against recomputing the whole sequence at every step.

``test_generate[{tiny,smollm2}-B{1,8}-{cache,nocache,cache-sampled}]``: B right-padded adapter-LM
prompts (the RLAdapter analyst prompt in SmolLM2's chat format, rows differing in their
situation so they differ in length), 32 new tokens each with no EOS stop, LoRA q/v r=8 on (as the
adapter LM decodes), the model's default dtype. One jitted ``generate`` call per round, prefill
included; tokens/s = B x 32 / best round. ``nocache`` is ``generate(use_cache=False)``: the same
loop and sampling, the full forward over all P + 31 slots at every step. ``cache-sampled`` is
temperature 0.7 / top-p 0.9 (the sort over the vocabulary per step). Each ``nocache`` case also
records whether its greedy tokens equal the cached decode's.

    python benchmarks/test_generate.py RESULT.json [MORE.json ...]   # the markdown table
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys

import jax
import numpy as np
import pytest

NEW_TOKENS = 32
SYSTEM = ("You are a professional game analyst. A player is playing a 2D Minecraft game. You will get the player's "
          "observation, status information, and its comprehension score of language guidance. You will be asked "
          "to provide concise summaries and suggestions about this player.")
SEES = ["grass, tree", "water, grass, sand, tree, cow", "grass, stone, coal, tree, table, zombie", "grass",
        "water, grass, stone, path, sand, tree, lava, coal, iron", "grass, tree, plant", "sand, water, cow",
        "stone, path, coal, iron, furnace, skeleton"]
CASES = [pytest.param(model, B, variant, id=f"{model}-B{B}-{variant}")
         for model, B, variant in itertools.product(("tiny", "smollm2"), (1, 8), ("cache", "nocache", "cache-sampled"))]


@functools.lru_cache(maxsize=None)
def prompts(model_key: str, batch: int):
    """Right-padded chat prompt ids [B, P] and lengths [B] for the model's tokenizer."""
    from conftest import load
    from twosome_jax.chat import render_chat
    from twosome_jax.model import pad_prompts

    *_, tok = load(model_key)
    ids = []
    for i in range(batch):
        user = (f"Player sees: <{SEES[i % len(SEES)]}>. Player status: <9 health, {9 - i % 3} food, 8 drink, "
                f"9 energy, {i} wood>. Past action: <do>. Past sub-goals: <chop tree, place crafting table, "
                f"make wood pickaxe>. Player's comprehension score: <{0.4 + 0.05 * i:.3f}>.")
        ids.append(tok(render_chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]))["input_ids"])
    return pad_prompts(ids, pad_id=tok.pad_token_id)


def _decode(model_key, B, variant):
    from conftest import load
    from twosome_jax.model import generate

    _, graphdef, base, lora, _ = load(model_key)
    ids, lens = prompts(model_key, B)
    sampled = variant == "cache-sampled"
    return lambda: jax.block_until_ready(generate(
        graphdef, base, lora, ids, lens, max_new_tokens=NEW_TOKENS, use_cache=variant != "nocache",
        temperature=0.7 if sampled else 0.0, top_p=0.9, key=jax.random.key(0) if sampled else None))


@pytest.mark.parametrize("model,B,variant", CASES)
def test_generate(benchmark, model, B, variant):
    run = _decode(model, B, variant)
    rounds = 5 if model == "tiny" else (1 if variant == "nocache" and B == 8 else 2)
    out = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    assert (np.asarray(out.lengths) == NEW_TOKENS).all()
    ids, lens = prompts(model, B)
    best = benchmark.stats.stats.min
    info = dict(model=model, batch=B, variant=variant, new_tokens=NEW_TOKENS, prompt_width=int(ids.shape[1]),
                prompt_tokens=[int(n) for n in lens], tokens_per_s=round(B * NEW_TOKENS / best, 2),
                backend=jax.default_backend(), loadavg_1m_after=round(os.getloadavg()[0], 2))
    if variant == "nocache":
        info["same_tokens_as_cache"] = bool(np.array_equal(out.tokens, _decode(model, B, "cache")().tokens))
    benchmark.extra_info.update(info)


def table(paths) -> str:
    """Markdown rows: tokens/s per variant and the cache's speed-up, side by side per (model, B)."""
    rows: dict = {}
    for path in paths:
        for b in json.load(open(path))["benchmarks"]:
            e = b["extra_info"]
            rows.setdefault((e["model"], e["batch"]), {})[e["variant"]] = (b["stats"]["min"], e)
    lines = ["| model | B | prompt tokens (width) | nocache s | nocache tokens/s | cache s | cache tokens/s | "
             "cache / nocache | cache-sampled tokens/s | same greedy tokens |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for (model, B), r in rows.items():
        (tn, en), (tc, ec) = r["nocache"], r["cache"]
        ts = r.get("cache-sampled", (None, {}))[1].get("tokens_per_s", "-")
        plen = f"{min(ec['prompt_tokens'])}-{max(ec['prompt_tokens'])} ({ec['prompt_width']})"
        lines.append(f"| {model} | {B} | {plen} | {tn:.2f} | {en['tokens_per_s']} | {tc:.3f} | {ec['tokens_per_s']} | "
                     f"**{tn / tc:.1f}x** | {ts} | {en.get('same_tokens_as_cache')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1:]))
