"""Shared fixtures of the benchmark suites (run by the command in benchmarks/README.md, never by
CI's ``pytest -q``, whose ``testpaths`` is ``tests``).

* ``matmul_rate``: this machine's measured f32 matmul rate (FLOP/s), from a large jitted
  matmul timed in the same run, so every case can report the fraction of it that it achieves.
* ``scoring_case``: a model (tiny-random or SmolLM2-135M, LoRA on q/v as in training) and a
  batch of real Overcooked token tables at the reference shapes: 5 actions = tomato salad,
  8 actions = lettuce-tomato salad, observations drawn (seed 0) from the reachable set.

Set ``TWOSOME_BENCH_FULL=1`` to also run the slow SmolLM2 batch-32 ``naive`` cases (minutes
each on 2 CPU cores; the forward+backward one holds ~20 GB of activations).
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

MODELS = {"tiny": "tiny-random", "smollm2": "smollm2-135m-instruct"}
TASKS = {5: "tomato_salad", 8: "lettuce_tomato_salad"}
FULL = os.environ.get("TWOSOME_BENCH_FULL", "") not in ("", "0")


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["jax"] = jax.__version__
    machine_info["jax_backend"] = jax.default_backend()
    machine_info["jax_devices"] = str(jax.devices())
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["date_utc_when_saved"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    try:
        machine_info["loadavg_when_saved"] = os.getloadavg()
    except OSError:
        pass


def measure_matmul_rate(n: int = 2048, repeats: int = 7) -> float:
    """Best-of f32 FLOP/s of an [n,n] @ [n,n] jitted matmul."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    jax.block_until_ready(f(a, b))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


@pytest.fixture(scope="session")
def matmul_rate():
    return measure_matmul_rate()


@functools.lru_cache(maxsize=None)
def load(model_key: str):
    """(config, graphdef, base, lora, tokenizer) with LoRA q/v r=8, adapters nonzero."""
    from twosome_jax.model import LoRAConfig, load_model, split_model

    config, model, tok = load_model(MODELS[model_key], lora=LoRAConfig())
    graphdef, base, lora = split_model(model)
    lora = jax.tree.map(lambda x: x + 0.01 * jax.random.normal(jax.random.key(1), x.shape, x.dtype), lora)
    return config, graphdef, base, lora, tok


@functools.lru_cache(maxsize=None)
def table_and_obs(model_key: str, num_actions: int):
    """(TextTable, reachable observations, action_tokens_max over all of them)."""
    from envs_jax.overcooked.layout import get_task
    from envs_jax.overcooked.reachable import enumerate_reachable
    from envs_jax.overcooked.text import TextTable
    from twosome_jax.scoring import max_action_tokens

    task = get_task(TASKS[num_actions])
    *_, tok = load(model_key)
    obs = np.asarray(enumerate_reachable(task)["obs"])
    table = TextTable.build(task, tok, observations=obs)
    every = jax.tree.map(np.asarray, table.tokenize(jnp.asarray(obs)))
    return table, obs, max_action_tokens(every)


def batch_tokens(model_key: str, num_actions: int, batch: int):
    table, obs, S = table_and_obs(model_key, num_actions)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(obs), batch, replace=len(obs) < batch)
    return table.tokenize(jnp.asarray(obs[idx])), S


def scoring_flops(config, tokens, implementation: str, S: int, fwdbwd: bool) -> dict:
    """FLOPs the implementation computes: 2 x (matmul parameters) x tokens + attention.

    Linear: 2 x non-embedding decoder parameters per token processed; LM head: 2 x D x V per
    predicting slot; attention: 4 x T^2 x heads x head_dim per layer and sequence (dense mask).
    Forward+backward: the base gets no weight gradient, so the backward costs one more pass of
    the linear/head matmuls (activation gradients) and two more of attention; LoRA (<1%) is
    not counted.
    """
    c = config
    D, H, K, hd, F, nl = c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, \
        c.intermediate_size, c.num_hidden_layers
    per_token = 2 * nl * (D * H * hd * 2 + D * K * hd * 2 + 3 * D * F)
    N, P = tokens.prompt_ids.shape
    _, A, L = tokens.action_ids.shape
    if implementation == "packed":
        seqs, T, head_slots = N, P + S, N * S
    else:
        seqs, T, head_slots = N * A, P + L, N * A * L
    linear = per_token * seqs * T + 2 * D * c.vocab_size * head_slots
    attention = 4 * nl * seqs * T * T * H * hd
    total = (2 * linear + 3 * attention) if fwdbwd else (linear + attention)
    return {"flops": int(total), "tokens": int(seqs * T), "seq_len": int(T), "sequences": int(seqs),
            "head_slots": int(head_slots)}


def machine_line() -> str:
    return (f"{platform.processor() or platform.machine()} x{os.cpu_count()}, jax {jax.__version__} "
            f"({jax.default_backend()})")
