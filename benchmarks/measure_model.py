"""Measure the model facts issue 2 asks for: parity, load time, compile time, steady forward
throughput and peak memory, for SmolLM2-135M (or another spec) on this machine.

    python benchmarks/measure_model.py [--model smollm2-135m-instruct] [--no-parity] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--no-parity", action="store_true", help="skip the transformers comparison")
    ap.add_argument("--shapes", default="1x32,4x64,16x64,8x256", help="BxT forward shapes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from twosome_jax.model import LoRAConfig, apply_hidden, apply_lm_head, load_model, split_model
    from twosome_jax.model.llama import causal_mask

    facts = {"model": args.model, "backend": jax.default_backend(), "devices": str(jax.devices()),
             "cpu": platform.processor() or platform.machine(), "jax": jax.__version__}
    t = time.perf_counter()
    config, model, tok = load_model(args.model, lora=LoRAConfig())
    facts["load_s"] = round(time.perf_counter() - t, 2)
    facts["dtype"] = str(config.dtype)
    facts["layers"] = config.num_hidden_layers
    facts["rss_after_load_mib"] = round(peak_rss_mib(), 1)
    graphdef, base, lora = split_model(model)

    @jax.jit
    def logits_fn(base, lora, ids, valid):
        B, T = ids.shape
        pos = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        h = apply_hidden(graphdef, base, lora, ids, pos, causal_mask(valid), use_lora=True)
        return apply_lm_head(graphdef, base, lora, h)

    rng = np.random.default_rng(0)
    fwd = []
    for shape in args.shapes.split(","):
        B, T = (int(s) for s in shape.split("x"))
        ids = jnp.asarray(rng.integers(0, config.vocab_size, (B, T)), jnp.int32)
        valid = jnp.ones((B, T), bool)
        t = time.perf_counter()
        compiled = logits_fn.lower(base, lora, ids, valid).compile()
        compile_s = time.perf_counter() - t
        compiled(base, lora, ids, valid).block_until_ready()  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            compiled(base, lora, ids, valid).block_until_ready()
            times.append(time.perf_counter() - t)
        step = float(np.median(times))
        fwd.append({"B": B, "T": T, "compile_s": round(compile_s, 2), "step_s": round(step, 4),
                    "tokens_per_s": round(B * T / step, 1)})
    facts["forward_logits"] = fwd

    # LoRA gradient (the PPO policy update's core), with and without remat
    B, T = 4, 64
    ids = jnp.asarray(rng.integers(0, config.vocab_size, (B, T)), jnp.int32)

    def loss(lora, base, ids):
        h = apply_hidden(graphdef, base, lora, ids, use_lora=True)
        lp = jax.nn.log_softmax(apply_lm_head(graphdef, base, lora, h[:, :-1]), axis=-1)
        return -jnp.mean(jnp.take_along_axis(lp, ids[:, 1:, None], axis=-1))

    g = jax.jit(jax.grad(loss))
    t = time.perf_counter()
    gc = g.lower(lora, base, ids).compile()
    c = time.perf_counter() - t
    jax.block_until_ready(gc(lora, base, ids))
    t = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(gc(lora, base, ids))
    step = (time.perf_counter() - t) / 3
    facts["lora_grad"] = {"B": B, "T": T, "compile_s": round(c, 2), "step_s": round(step, 3),
                          "tokens_per_s": round(B * T / step, 1)}

    if not args.no_parity and args.model.startswith("smollm2"):
        import torch
        import transformers

        from twosome_jax.hub import smollm2_gguf_path

        p = smollm2_gguf_path()
        t = time.perf_counter()
        ref = transformers.AutoModelForCausalLM.from_pretrained(
            p.parent, gguf_file=p.name, dtype=torch.float32).eval()
        facts["transformers_load_s"] = round(time.perf_counter() - t, 2)
        text = ("You are a robot in a kitchen. There is a tomato, a lettuce and an onion on the table. "
                "Your task is to make a salad. What should you do next? You should first pick up")
        ids30 = tok(text)["input_ids"][:30]
        with torch.no_grad():
            r = ref(torch.tensor([ids30])).logits.float().numpy()
        ours = np.asarray(logits_fn(base, lora, jnp.asarray([ids30], jnp.int32), jnp.ones((1, 30), bool)))
        facts["parity"] = {"tokens": 30, "max_abs_logit_diff": float(np.abs(ours - r).max()),
                           "mean_abs_logit_diff": float(np.abs(ours - r).mean()),
                           "argmax_equal": int((ours.argmax(-1) == r.argmax(-1)).sum())}
    facts["peak_rss_mib"] = round(peak_rss_mib(), 1)

    if args.json:
        print(json.dumps(facts))
        return
    for k, v in facts.items():
        if isinstance(v, list):
            for row in v:
                print(f"{k}: {row}")
        else:
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
