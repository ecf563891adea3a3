"""Model behaviour without torch: explicit masks/positions, LoRA switches, grads, dtypes, remat."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from twosome_jax.model import (
    Llama,
    LlamaConfig,
    LoRAConfig,
    LoRAParam,
    apply_hidden,
    apply_lm_head,
    causal_mask,
    segment_mask,
    split_model,
)
from twosome_jax.model.llama import StackedLinear

CFG = LlamaConfig.tiny(vocab_size=512, tie_word_embeddings=False, initializer_range=0.2)


def _ids(rng, *shape):
    return jnp.asarray(rng.integers(3, CFG.vocab_size, size=shape), jnp.int32)


def _jit_model(model):
    """model(...) with the forward pass jitted (much faster than eager on CPU)."""
    gd, b, l = split_model(model)
    f = jax.jit(apply_hidden, static_argnums=(0,), static_argnames=("use_lora",))
    return lambda ids, pos=None, mask=None, use_lora=True: f(gd, b, l, ids, pos, mask, use_lora=use_lora)


def _set_lora_b(model, seed=1, std=0.2):
    rng = np.random.default_rng(seed)
    st = nnx.state(model, LoRAParam)
    for path, var in nnx.to_flat_state(st):
        if path[-1] == "lora_b":
            var.set_value(jnp.asarray(rng.normal(0, std, var.get_value().shape), jnp.float32))
    nnx.update(model, st)


def test_packed_sequences_match_separate():
    """Two sequences packed in one row with a block mask and restarted positions."""
    model = _jit_model(Llama(CFG, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    a, b = _ids(rng, 1, 7), _ids(rng, 1, 9)
    ha, hb = model(a), model(b)
    T = 20
    ids = jnp.zeros((1, T), jnp.int32).at[0, :7].set(a[0]).at[0, 7:16].set(b[0])
    seg = np.zeros((1, T), np.int32)
    seg[0, :7], seg[0, 7:16] = 1, 2
    pos = np.zeros((1, T), np.int32)
    pos[0, :7], pos[0, 7:16] = np.arange(7), np.arange(9)
    h = model(ids, jnp.asarray(pos), segment_mask(seg))
    np.testing.assert_allclose(h[0, :7], ha[0], atol=1e-5)
    np.testing.assert_allclose(h[0, 7:16], hb[0], atol=1e-5)
    assert np.isfinite(np.asarray(h)).all()  # padded rows (fully masked) stay finite


def test_right_padding_and_defaults():
    model = _jit_model(Llama(CFG, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(1)
    x = _ids(rng, 1, 5)
    padded = jnp.concatenate([x, jnp.zeros((1, 11), jnp.int32)], axis=1)
    valid = jnp.arange(16)[None] < 5
    pos = jnp.arange(16, dtype=jnp.int32)[None]
    h = model(padded, pos, causal_mask(valid))
    np.testing.assert_allclose(h[0, :5], model(x)[0], atol=1e-5)
    np.testing.assert_allclose(model(padded, pos, valid), h, atol=1e-6)  # [B,T] mask accepted
    # default positions/mask are arange/causal
    np.testing.assert_allclose(model(x), model(x, jnp.arange(5)[None], causal_mask(jnp.ones((1, 5), bool))),
                               atol=1e-6)


def test_positions_are_used():
    model = _jit_model(Llama(CFG, rngs=nnx.Rngs(0)))
    x = _ids(np.random.default_rng(2), 1, 6)
    base = model(x)
    # RoPE is relative: a uniform shift leaves the outputs unchanged ...
    shifted = model(x, jnp.arange(6, dtype=jnp.int32)[None] + 3)
    np.testing.assert_allclose(shifted, base, atol=1e-4)
    # ... but a gap between positions changes them
    gapped = model(x, jnp.asarray([[0, 1, 2, 10, 11, 12]], jnp.int32))
    assert np.max(np.abs(np.asarray(gapped - base))) > 1e-3


def test_lora_b_zero_equals_base():
    base = Llama(CFG, rngs=nnx.Rngs(0))
    lora = Llama(CFG, LoRAConfig(rank=4, alpha=8, targets=("q_proj", "v_proj", "down_proj")),
                 rngs=nnx.Rngs(0))
    x = _ids(np.random.default_rng(3), 2, 10)
    # same base weights: LoRA init draws from its own stream after the base weights
    for (pa, va), (pb, vb) in zip(nnx.to_flat_state(nnx.state(base, nnx.Param)),
                                  nnx.to_flat_state(nnx.state(lora, nnx.Param))):
        assert pa == pb
        np.testing.assert_array_equal(va.get_value(), vb.get_value())
    ref = base.lm_head(base(x))
    np.testing.assert_allclose(lora.lm_head(lora(x, use_lora=True)), ref, atol=1e-6)
    # A is initialised (kaiming-uniform like PEFT), B is zero
    st = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(lora, LoRAParam))}
    a = st[("layers", "self_attn", "q_proj", "lora_a")]
    assert a.shape == (CFG.num_hidden_layers, CFG.hidden_size, 4) and a.dtype == jnp.float32
    assert 0 < np.abs(a).max() <= 1 / np.sqrt(CFG.hidden_size)
    assert not np.any(st[("layers", "self_attn", "q_proj", "lora_b")])
    assert ("layers", "self_attn", "k_proj", "lora_a") not in st


def test_lora_off_equals_base_with_nonzero_b():
    lcfg = LoRAConfig(rank=4, alpha=8)
    base = Llama(CFG, rngs=nnx.Rngs(0))
    model = Llama(CFG, lcfg, rngs=nnx.Rngs(0))
    _set_lora_b(model)
    x = _ids(np.random.default_rng(4), 2, 10)
    ref = np.asarray(base.lm_head(base(x)))
    np.testing.assert_allclose(model.lm_head(model(x, use_lora=False)), ref, atol=1e-6)
    assert np.max(np.abs(np.asarray(model.lm_head(model(x, use_lora=True))) - ref)) > 1e-2


def test_peft_scaling_hand_computed():
    lcfg = LoRAConfig(rank=2, alpha=6, targets=("q_proj",))
    assert lcfg.scaling == 3.0
    lin = StackedLinear(1, 3, 2, config=CFG, lora=lcfg, rngs=nnx.Rngs(0))
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    A = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], np.float32)
    B = np.array([[0.5, 0.0], [0.0, -1.0]], np.float32)
    one = nnx.merge(*nnx.split(lin))  # slice layer 0 like the scan does
    one.kernel.set_value(jnp.asarray(W))
    one.lora_a.set_value(jnp.asarray(A))
    one.lora_b.set_value(jnp.asarray(B))
    x = jnp.asarray([[1.0, 1.0, 1.0]])
    # x W = [2, 2]; x A = [1, 2]; (x A) B = [0.5, -2]; * alpha/r = [1.5, -6] -> [3.5, -4]
    np.testing.assert_allclose(one(x, use_lora=True), [[3.5, -4.0]], atol=1e-6)
    np.testing.assert_allclose(one(x, use_lora=False), [[2.0, 2.0]], atol=1e-6)


def test_grad_only_lora():
    model = Llama(CFG, LoRAConfig(rank=4, alpha=8), rngs=nnx.Rngs(0))
    _set_lora_b(model, std=0.05)
    graphdef, base, lora = split_model(model)
    # base holds only Param, lora only LoRAParam
    assert all(isinstance(v, nnx.Param) for _, v in nnx.to_flat_state(base))
    assert all(isinstance(v, LoRAParam) for _, v in nnx.to_flat_state(lora))
    assert not any(isinstance(v, nnx.Param) for _, v in nnx.to_flat_state(lora))
    x = _ids(np.random.default_rng(5), 2, 8)

    @jax.jit
    def loss(lora_state):
        h = apply_hidden(graphdef, base, lora_state, x, use_lora=True)
        logits = apply_lm_head(graphdef, base, lora_state, h)
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 7])

    grads = jax.grad(loss)(lora)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(lora)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == 4 and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert all(np.abs(np.asarray(g)).max() > 0 for g in leaves)
    n_lora = sum(g.size for g in leaves)
    n_base = sum(p.size for p in jax.tree_util.tree_leaves(base))
    assert n_lora < n_base / 10
    # with adapters off the loss does not depend on them
    g_off = jax.grad(lambda l: jnp.sum(apply_hidden(graphdef, base, l, x, use_lora=False)))(lora)
    assert all(not np.any(np.asarray(g)) for g in jax.tree_util.tree_leaves(g_off))


def test_remat_same_values_and_grads():
    cfg_r = CFG.replace(remat=True)
    m = Llama(CFG, LoRAConfig(), rngs=nnx.Rngs(0))
    mr = Llama(cfg_r, LoRAConfig(), rngs=nnx.Rngs(0))
    _set_lora_b(m), _set_lora_b(mr)
    x = _ids(np.random.default_rng(6), 1, 8)

    def g(model):
        gd, b, l = split_model(model)
        w = jnp.asarray(np.random.default_rng(9).normal(size=CFG.hidden_size), jnp.float32)
        return jax.jit(jax.grad(lambda l: jnp.sum(apply_hidden(gd, b, l, x) @ w)))(l)

    for a, b in zip(jax.tree_util.tree_leaves(g(m)), jax.tree_util.tree_leaves(g(mr))):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_bfloat16_dtype_policy():
    cfg = CFG.replace(dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    m = Llama(cfg, LoRAConfig(), rngs=nnx.Rngs(0))
    assert m.layers.self_attn.q_proj.kernel.get_value().dtype == jnp.bfloat16
    assert m.layers.self_attn.q_proj.lora_a.get_value().dtype == jnp.float32
    x = _ids(np.random.default_rng(7), 1, 8)
    h = m(x)
    logits = m.lm_head(h)
    assert h.dtype == jnp.float32 and logits.dtype == jnp.float32
    # same seed -> the float32 model's weights rounded to bfloat16
    ref = Llama(CFG, LoRAConfig(), rngs=nnx.Rngs(0))
    ref_logits = np.asarray(ref.lm_head(ref(x)))
    assert np.max(np.abs(np.asarray(logits) - ref_logits)) < 0.05 * np.max(np.abs(ref_logits))


def test_config_from_hf_dict_variants():
    old = {"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 500000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
           "eos_token_id": [2, 3], "tie_word_embeddings": True}
    c = LlamaConfig.from_hf_dict(old)
    assert c.head_dim == 16 and c.rope_theta == 500000.0 and c.eos_token_id == 2
    assert c.rope_scaling_dict["factor"] == 8.0
    new = dict(old)
    del new["rope_scaling"], new["rope_theta"]
    new["rope_parameters"] = {"rope_type": "default", "rope_theta": 100000.0}
    c2 = LlamaConfig.from_hf_dict(new)
    assert c2.rope_scaling is None and c2.rope_theta == 100000.0
    hash(c), hash(c2)  # usable as a static jit argument
    assert LlamaConfig.from_hf_dict(c.to_hf_dict()) == c


def test_thirty_layers_compile_quickly():
    """Scanned layers: compile time does not grow with depth."""
    cfg = CFG.replace(num_hidden_layers=30)
    model = Llama(cfg, LoRAConfig(), rngs=nnx.Rngs(0))
    gd, b, l = split_model(model)
    x = _ids(np.random.default_rng(8), 2, 32)
    f = jax.jit(lambda b, l, x: apply_hidden(gd, b, l, x))
    t = time.perf_counter()
    f.lower(b, l, x).compile()
    assert time.perf_counter() - t < 20.0


def test_nnx_optimizer_updates_only_lora():
    """The NNX-native route (nnx.Optimizer with wrt=LoRAParam) trains adapters, base stays frozen."""
    optax = pytest.importorskip("optax")
    model = Llama(CFG.replace(remat=True), LoRAConfig(), rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adamw(1e-2), wrt=LoRAParam)
    x = _ids(np.random.default_rng(10), 2, 8)

    def loss(m):
        return -jnp.mean(jax.nn.log_softmax(m.lm_head(m(x)))[..., 7])

    @nnx.jit
    def step(m, o):
        value, grads = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, LoRAParam))(m)
        o.update(m, grads)
        return value

    base0 = [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))]
    losses = [float(step(model, opt)) for _ in range(4)]
    assert losses[-1] < losses[0]
    for a, b in zip(base0, jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))):
        np.testing.assert_array_equal(a, np.asarray(b))
