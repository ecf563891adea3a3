"""naive == packed on the real SmolLM2-135M, for values and for LoRA gradients (float32).

The texts are the reference's own prompts and action strings from the committed golden traces
(5 actions for tomato salad, 8 for lettuce-tomato salad), so this covers the real prompt
lengths and SmolLM2's BOS-less tokenizer; tests/test_scoring.py checks the same on a tiny
random model against plain causal runs.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twosome_jax.model import LoRAConfig, load_model, split_model
from twosome_jax.scoring import action_logprobs, encode_texts, max_action_tokens, policy_logits

DATA = Path(__file__).parent / "data"
PROMPTS_PER_TASK = 2


def golden_texts(task: str, count: int):
    """The first ``count`` distinct (prompt, actions) pairs of the golden episodes."""
    seen = {}
    with gzip.open(DATA / f"overcooked_{task}.jsonl.gz", "rt") as f:
        for line in f:
            for step in json.loads(line)["steps"]:
                seen.setdefault(step["prompt"], step["actions"])
                if len(seen) == count:
                    return list(seen), list(seen.values())
    raise AssertionError(f"fewer than {count} distinct prompts in the {task} golden traces")


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    _, model, tok = load_model(smollm2_gguf, dtype="float32",
                               lora=LoRAConfig(rank=8, alpha=16.0, targets=("q_proj", "v_proj")))
    graphdef, base, lora = split_model(model)
    # B starts at zero: perturb every adapter so that it changes the scores and has gradients
    keys = iter(jax.random.split(jax.random.key(5), len(jax.tree.leaves(lora))))
    lora = jax.tree.map(lambda x: x + 0.02 * jax.random.normal(next(keys), x.shape, x.dtype), lora)
    return tok, graphdef, base, lora


@pytest.mark.smollm2
@pytest.mark.parametrize("task,num_actions", [("tomato_salad", 5), ("lettuce_tomato_salad", 8)])
def test_packed_equals_naive_on_smollm2(smollm2, task, num_actions):
    tok, graphdef, base, lora = smollm2
    prompts, actions = golden_texts(task, PROMPTS_PER_TASK)
    assert all(len(a) == num_actions for a in actions)
    tokens = SimpleNamespace(**jax.tree.map(jnp.asarray, vars(encode_texts(tok, prompts, actions))))
    bound = max_action_tokens(tokens)

    naive = np.asarray(action_logprobs(graphdef, base, lora, tokens, implementation="naive"))
    packed = np.asarray(jax.jit(lambda base, lora: action_logprobs(  # weights as arguments, not constants
        graphdef, base, lora, tokens, implementation="packed", action_tokens_max=bound))(base, lora))
    assert naive.shape == (PROMPTS_PER_TASK, num_actions) and np.all(naive < 0)
    np.testing.assert_allclose(packed, naive, atol=1e-4, rtol=0)
    without = np.asarray(action_logprobs(graphdef, base, lora, tokens, use_lora=False))
    assert np.abs(without - naive).max() > 1e-3  # the adapters matter here

    def loss(lora, base, implementation):
        logits = policy_logits(graphdef, base, lora, tokens, implementation=implementation,
                               action_tokens_max=bound if implementation == "packed" else None)
        logp = jax.nn.log_softmax(logits, -1)
        return jnp.sum(logp * jnp.arange(num_actions))  # every action's score enters with its own weight

    grad = jax.jit(jax.grad(loss), static_argnums=2)
    g_packed, g_naive = jax.tree.leaves(grad(lora, base, "packed")), jax.tree.leaves(grad(lora, base, "naive"))
    assert g_naive and len(g_packed) == len(g_naive)
    worst = 0.0
    for gp, gn in zip(g_packed, g_naive):
        gp, gn = np.asarray(gp), np.asarray(gn)
        assert np.abs(gn).max() > 1e-3
        np.testing.assert_allclose(gp, gn, atol=1e-4 * max(1.0, float(np.abs(gn).max())), rtol=0)
        worst = max(worst, float(np.abs(gp - gn).max()))
    print(f"SmolLM2 {task}: packed - naive max abs diff {np.abs(packed - naive).max():.1e} (values), "
          f"{worst:.1e} (LoRA gradients, largest |gradient| {max(float(np.abs(g).max()) for g in g_naive):.1e})")
