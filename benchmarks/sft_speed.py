"""Seconds per adapter-SFT step (twosome_jax/sft.py): SmolLM2-135M, LoRA r 64 on q/v, 4 x 256 tokens.

    python benchmarks/sft_speed.py [--model smollm2-135m-instruct] [--batch 4] [--tokens 256] [--steps 3]

Builds one batch of ``--batch`` sequences of ``--tokens`` input tokens (random ids; the last
``--response-tokens`` targets of each row count in the loss, the rest are prompt), compiles the
train step of ``sft.make_train_step`` with the paper's settings (``SFTSettings()``: LoRA dropout
on, AdamW, clipping), then times ``--steps`` more steps on it. Prints one JSON object: the compile
(plus first step) seconds, each step's seconds, the median, tokens per second, and the date,
commit and machine (``report.provenance``).
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
from report import provenance  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256, help="input tokens per sequence")
    parser.add_argument("--response-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the compiling one")
    args = parser.parse_args()

    from twosome_jax.model import load_model, split_model
    from twosome_jax.sft import (
        Example,
        SFTSettings,
        make_batches,
        make_train_step,
        sft_optimizer,
    )

    settings = SFTSettings(batch_size=args.batch, max_length=args.tokens + 1)
    config, model, _ = load_model(args.model, dtype=args.dtype, lora=settings.lora_config(), tokenizer=False)
    rng = np.random.default_rng(0)
    examples = [Example(tuple(int(i) for i in rng.integers(3, config.vocab_size, args.tokens + 1)),
                        prompt_len=args.tokens + 1 - args.response_tokens) for _ in range(args.batch)]
    (batch,) = make_batches(examples, range(args.batch), args.batch, settings.seed)
    width = batch.input_ids.shape[1]
    graphdef, base, lora = split_model(model)
    step = make_train_step(graphdef, base, settings)
    opt_state = sft_optimizer(settings).init(lora)

    start = provenance()
    t = time.perf_counter()
    lora, opt_state, loss = step(lora, opt_state, batch)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        lora, opt_state, loss = step(lora, opt_state, batch)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - t)
    median = float(np.median(times))
    out = {"model": args.model, "dtype": args.dtype, "batch": args.batch, "input_tokens": args.tokens,
           "padded_width": int(width), "response_tokens": args.response_tokens, "lora_rank": settings.lora_rank,
           "lora_targets": list(settings.lora_targets), "backend": jax.default_backend(),
           "compile_and_first_step_s": round(compile_s, 2), "step_s": [round(x, 3) for x in times],
           "median_step_s": round(median, 3), "tokens_per_s": round(args.batch * args.tokens / median, 1),
           "last_loss": round(float(loss), 4), **start, "loadavg_after": list(os.getloadavg())}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
