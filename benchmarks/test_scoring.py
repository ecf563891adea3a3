"""Scoring kernels: naive vs packed, forward and forward+backward (gradient w.r.t. LoRA only).

Names: ``test_scoring[{naive|packed|padded}-{fwd|fwdbwd}-{tiny|smollm2}-A{5|8}-B{4|32}]``.
``padded`` is ``packed`` with ``action_tokens_max = A*L``: the earlier packed layout, every
action's block padded to L tokens and the LM head on all A*L slots; ``packed`` packs the real
action tokens tightly (the bound is the largest total over the task's reachable observations).
Each case records in ``extra_info`` the FLOPs it computes, the achieved FLOP/s and the fraction
of this machine's matmul rate measured in the same run (``benchmarks/report.py`` prints the
table and the packed/naive ratios).
"""

from __future__ import annotations

import itertools

import os

import jax
import jax.numpy as jnp
import pytest

from conftest import FULL, batch_tokens, load, scoring_flops

CASES = []
for model, A, B, impl, pas in itertools.product(("tiny", "smollm2"), (5, 8), (4, 32), ("naive", "padded", "packed"),
                                                  ("fwd", "fwdbwd")):
    marks = []
    if model == "smollm2" and B == 32 and impl == "naive" and not FULL:
        marks.append(pytest.mark.skip(reason="slow (minutes; fwdbwd ~20 GB): set TWOSOME_BENCH_FULL=1"))
    CASES.append(pytest.param(impl, pas, model, A, B, marks=marks, id=f"{impl}-{pas}-{model}-A{A}-B{B}"))


def _rounds(model, B, impl):
    if model == "tiny":
        return 10
    return 2 if B == 4 else 1  # SmolLM2 on 2 CPU cores: seconds to minutes per call


@pytest.mark.parametrize("impl,pas,model,A,B", CASES)
def test_scoring(benchmark, matmul_rate, impl, pas, model, A, B):
    from twosome_jax.scoring import policy_logits

    config, graphdef, base, lora, _ = load(model)
    tokens, S = batch_tokens(model, A, B)
    A_, L = tokens.action_ids.shape[1:]
    bound = {"packed": S, "padded": A_ * L, "naive": None}[impl]
    kind = "naive" if impl == "naive" else "packed"

    def logits(base, lora, tokens):
        return policy_logits(graphdef, base, lora, tokens, implementation=kind, action_tokens_max=bound)

    if pas == "fwd":
        fn = jax.jit(logits)
    else:
        def loss(lora, base, tokens):  # a PPO-like scalar of the log-policy
            return -jnp.mean(jax.nn.log_softmax(logits(base, lora, tokens), -1)[:, 0])

        fn = jax.jit(lambda base, lora, tokens: jax.value_and_grad(loss)(lora, base, tokens))
    run = lambda: jax.block_until_ready(fn(base, lora, tokens))
    benchmark.pedantic(run, rounds=_rounds(model, B, impl), iterations=1, warmup_rounds=1)

    info = scoring_flops(config, tokens, kind, bound or 0, pas == "fwdbwd")
    best = benchmark.stats.stats.min
    info.update(action_slots=bound or A_ * L, implementation=impl, pass_=pas, model=model, A=A, B=B,
                matmul_rate_gflops=round(matmul_rate / 1e9, 2),
                achieved_gflops_best=round(info["flops"] / best / 1e9, 2),
                fraction_of_matmul_rate=round(info["flops"] / best / matmul_rate, 3))
    benchmark.extra_info.update(info, loadavg_1m_after=round(os.getloadavg()[0], 2))
