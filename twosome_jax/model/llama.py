"""A Flax NNX LLaMA with stacked (scanned) decoder layers and LoRA adapters.

Weight layout follows Hugging Face names so that conversion is a rename + transpose:
``embed_tokens.embedding`` [V, D], ``layers.self_attn.q_proj.kernel`` [L, D, H*hd] (stacked over
layers, ``x @ kernel``), ``layers.input_layernorm.scale`` [L, D], ``norm.scale`` [D] and
``lm_head.kernel`` [D, V] when the head is untied.

Frozen base weights are ``nnx.Param``; LoRA adapters are ``LoRAParam`` (a separate
``nnx.Variable`` type), so ``nnx.split(model, nnx.Param, LoRAParam)`` yields two pytrees.

``Llama.extend`` runs new tokens against a ``KVCache`` (kv_cache.py) for decoding; it shares the
layer scan with ``__call__``.

LoRA dropout (PEFT's ``lora_dropout``) is a call-time option of ``__call__``, ``lora_dropout=(rate,
key)``: it drops the LoRA branch's input only, ``x @ W + dropout(x) @ A @ B * alpha/r``, as PEFT's
``lora.Linear`` does in training mode. Left ``None`` (inference, scoring, PPO) the computation is
exactly the one without dropout. It is not part of ``LoRAConfig`` because it changes training only,
never the adapted model.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from twosome_jax.choices import LORA_TARGETS

from .config import LlamaConfig, rope_inv_freq
from .kv_cache import KVCache

ALL_TARGETS = LORA_TARGETS  # the projections LoRA can adapt (twosome_jax.choices)


class LoRAParam(nnx.Variable):
    """Trainable LoRA adapter weights (deliberately not a subclass of ``nnx.Param``)."""


def init_lora_a(key, shape) -> jax.Array:
    """PEFT's initial LoRA A: kaiming_uniform(a=sqrt(5)) on the torch [r, in] weight, i.e.
    U(-1/sqrt(in), 1/sqrt(in)), stored as [..., in, r] in float32 (B starts at 0, so the
    adapted model starts equal to the base)."""
    bound = 1.0 / math.sqrt(shape[-2])
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q_proj", "v_proj")

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        bad = [t for t in self.targets if t not in ALL_TARGETS]
        if bad:
            raise ValueError(f"unknown LoRA target(s) {bad}; choose from {', '.join(ALL_TARGETS)}")
        if self.rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {self.rank}")

    @property
    def scaling(self) -> float:
        """PEFT scaling alpha / r."""
        return float(self.alpha) / float(self.rank)


class StackedLinear(nnx.Module):
    """A bias-free linear layer with a leading layer axis and optional LoRA.

    Built with ``kernel`` of shape [L, in, out]; inside the layer scan it is merged back with one
    layer's slice, so ``__call__`` sees [in, out].
    """

    def __init__(self, num_layers, in_features, out_features, *, config: LlamaConfig,
                 lora: LoRAConfig | None, rngs: nnx.Rngs):
        init = jax.nn.initializers.normal(config.initializer_range)
        key = rngs.params()
        self.kernel = nnx.Param(init(key, (num_layers, in_features, out_features), jnp.float32).astype(config.param_dtype))
        self.dtype = config.dtype
        if lora is not None:
            # The key derives from this layer's kernel key, so base weights do not depend on
            # whether (or where) adapters are attached.
            self.lora_a = LoRAParam(init_lora_a(jax.random.fold_in(key, 1), (num_layers, in_features, lora.rank)))
            self.lora_b = LoRAParam(jnp.zeros((num_layers, lora.rank, out_features), jnp.float32))
            self.lora_scaling = lora.scaling
        else:
            self.lora_a = None
            self.lora_b = None
            self.lora_scaling = 0.0

    def __call__(self, x, use_lora: bool = True, lora_dropout=None):
        """``lora_dropout``: ``(rate, key)`` drops the LoRA branch's input (inverted dropout, the
        kept values scaled by 1 / (1 - rate)); ``None``: no dropout."""
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype),
                    preferred_element_type=jnp.float32)
        if use_lora and self.lora_a is not None:
            xl = x.astype(jnp.float32)
            if lora_dropout is not None and lora_dropout[0] > 0:
                rate, key = lora_dropout
                keep = jax.random.bernoulli(key, 1.0 - rate, xl.shape)
                xl = jnp.where(keep, xl / (1.0 - rate), 0.0)
            xa = jnp.dot(xl, self.lora_a[...])
            y = y + jnp.dot(xa, self.lora_b[...]) * self.lora_scaling
        return y.astype(self.dtype)


class RMSNorm(nnx.Module):
    def __init__(self, shape, *, eps: float, config: LlamaConfig):
        self.scale = nnx.Param(jnp.ones(shape, config.param_dtype))
        self.eps = eps
        self.dtype = config.dtype

    def __call__(self, x):
        # like HF: normalise in float32, cast back, multiply by the weight
        xf = x.astype(jnp.float32)
        var = jnp.mean(xf * xf, axis=-1, keepdims=True)
        xf = xf * jax.lax.rsqrt(var + self.eps)
        return (self.scale[...].astype(jnp.float32) * xf.astype(self.dtype).astype(jnp.float32)).astype(self.dtype)


def _dropout_for(lora_dropout, name):
    """The ``(rate, key)`` of projection ``name``: its own key, folded in from the layer's."""
    if lora_dropout is None:
        return None
    rate, key = lora_dropout
    return rate, jax.random.fold_in(key, ALL_TARGETS.index(name))


def rotate_half(x):
    h = x.shape[-1] // 2
    return jnp.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope_cos_sin(config: LlamaConfig, positions):
    """cos, sin of shape [B, T, head_dim] (float32), HF layout (frequencies repeated twice)."""
    inv = jnp.asarray(rope_inv_freq(config))
    freqs = positions.astype(jnp.float32)[..., None] * inv
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x, cos, sin):
    # x [B, T, H, hd]; cos/sin [B, T, hd]
    c = cos[:, :, None, :]
    s = sin[:, :, None, :]
    xf = x.astype(jnp.float32)
    return (xf * c + rotate_half(xf) * s).astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, config: LlamaConfig, lora, rngs):
        L, D, hd = config.num_hidden_layers, config.hidden_size, config.head_dim
        H, K = config.num_attention_heads, config.num_key_value_heads
        mk = lambda name, i, o: StackedLinear(
            L, i, o, config=config, lora=lora if (lora and name in lora.targets) else None, rngs=rngs)
        self.q_proj = mk("q_proj", D, H * hd)
        self.k_proj = mk("k_proj", D, K * hd)
        self.v_proj = mk("v_proj", D, K * hd)
        self.o_proj = mk("o_proj", H * hd, D)
        self.num_heads, self.num_kv, self.head_dim = H, K, hd
        self.dtype = config.dtype

    def __call__(self, x, cos, sin, mask, use_lora, cache: KVCache | None = None, layer=None, index=None,
                 lora_dropout=None):
        """x [B,T,D] -> (output [B,T,D], cache). mask [B,T,S] is True where query t may attend key
        s. Without a cache the keys are the T tokens themselves (S = T); with one, the new keys
        and values go to slots ``index .. index+T`` of ``layer`` and the keys are all S slots.
        ``lora_dropout``: this layer's ``(rate, key)`` or ``None`` (see ``StackedLinear``)."""
        B, T, _ = x.shape
        H, K, hd = self.num_heads, self.num_kv, self.head_dim
        G = H // K
        drop = lambda name: _dropout_for(lora_dropout, name)
        q = self.q_proj(x, use_lora, drop("q_proj")).reshape(B, T, H, hd)
        k = self.k_proj(x, use_lora, drop("k_proj")).reshape(B, T, K, hd)
        v = self.v_proj(x, use_lora, drop("v_proj")).reshape(B, T, K, hd)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if cache is not None:
            cache = cache.write(layer, index, k, v)
            k, v = cache.layer(layer)
        q = q.reshape(B, T, K, G, hd)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
        scores = scores * (1.0 / math.sqrt(hd))
        big_neg = jnp.finfo(jnp.float32).min
        scores = jnp.where(mask[:, None, None, :, :], scores, big_neg)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v, preferred_element_type=jnp.float32)
        out = out.astype(self.dtype).reshape(B, T, H * hd)
        return self.o_proj(out, use_lora, drop("o_proj")), cache


class MLP(nnx.Module):
    def __init__(self, config: LlamaConfig, lora, rngs):
        L, D, F = config.num_hidden_layers, config.hidden_size, config.intermediate_size
        mk = lambda name, i, o: StackedLinear(
            L, i, o, config=config, lora=lora if (lora and name in lora.targets) else None, rngs=rngs)
        self.gate_proj = mk("gate_proj", D, F)
        self.up_proj = mk("up_proj", D, F)
        self.down_proj = mk("down_proj", F, D)

    def __call__(self, x, use_lora, lora_dropout=None):
        drop = lambda name: _dropout_for(lora_dropout, name)
        g = self.gate_proj(x, use_lora, drop("gate_proj"))
        u = self.up_proj(x, use_lora, drop("up_proj"))
        return self.down_proj(jax.nn.silu(g) * u, use_lora, drop("down_proj"))


class DecoderLayers(nnx.Module):
    """All decoder layers, every weight with a leading layer axis; run with ``lax.scan``."""

    def __init__(self, config: LlamaConfig, lora, rngs):
        L, D = config.num_hidden_layers, config.hidden_size
        self.input_layernorm = RMSNorm((L, D), eps=config.rms_norm_eps, config=config)
        self.self_attn = Attention(config, lora, rngs)
        self.post_attention_layernorm = RMSNorm((L, D), eps=config.rms_norm_eps, config=config)
        self.mlp = MLP(config, lora, rngs)

    def layer(self, h, cos, sin, mask, use_lora, cache=None, layer=None, index=None, lora_dropout=None):
        """One layer's computation; call on a module merged with one layer's slice.
        -> (h, cache); ``cache``, ``layer``, ``index``, ``lora_dropout`` as in ``Attention``."""
        a, cache = self.self_attn(self.input_layernorm(h), cos, sin, mask, use_lora, cache, layer, index,
                                  lora_dropout)
        h = h + a
        m = self.mlp(self.post_attention_layernorm(h), use_lora, lora_dropout)
        return h + m, cache


class Embed(nnx.Module):
    def __init__(self, config: LlamaConfig, rngs):
        init = jax.nn.initializers.normal(config.initializer_range)
        self.embedding = nnx.Param(
            init(rngs.params(), (config.vocab_size, config.hidden_size), jnp.float32).astype(config.param_dtype))
        self.dtype = config.dtype

    def __call__(self, ids):
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, h):
        return jnp.dot(h.astype(self.dtype), self.embedding[...].astype(self.dtype).T,
                       preferred_element_type=jnp.float32)


class LMHead(nnx.Module):
    def __init__(self, config: LlamaConfig, rngs):
        init = jax.nn.initializers.normal(config.initializer_range)
        self.kernel = nnx.Param(
            init(rngs.params(), (config.hidden_size, config.vocab_size), jnp.float32).astype(config.param_dtype))
        self.dtype = config.dtype

    def __call__(self, h):
        return jnp.dot(h.astype(self.dtype), self.kernel[...].astype(self.dtype),
                       preferred_element_type=jnp.float32)


class Llama(nnx.Module):
    """LLaMA decoder. ``model(ids, positions, mask)`` returns the final-RMSNorm hidden state."""

    def __init__(self, config: LlamaConfig, lora: LoRAConfig | None = None, *,
                 rngs: nnx.Rngs | None = None):
        if rngs is None:
            rngs = nnx.Rngs(0)
        self.config = config
        self.lora_config = lora
        self.embed_tokens = Embed(config, rngs)
        self.layers = DecoderLayers(config, lora, rngs)
        self.norm = RMSNorm((config.hidden_size,), eps=config.rms_norm_eps, config=config)
        if not config.tie_word_embeddings:
            self.lm_head_proj = LMHead(config, rngs)
        else:
            self.lm_head_proj = None

    def __call__(self, input_ids, positions=None, attention_mask=None, use_lora: bool = True,
                 lora_dropout=None):
        """input_ids int [B,T]; positions int [B,T] (default arange); attention_mask bool
        [B,T,T] with True where query t may attend key s (default causal; a [B,T] padding
        mask is turned into a causal one); lora_dropout ``(rate, key)`` for training, or
        ``None`` (see the module docstring).
        Returns the hidden state after the final RMSNorm, [B,T,D] float32."""
        input_ids = jnp.asarray(input_ids)
        B, T = input_ids.shape
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
        if attention_mask is None:
            attention_mask = jnp.broadcast_to(jnp.tril(jnp.ones((T, T), bool)), (B, T, T))
        attention_mask = jnp.asarray(attention_mask, bool)
        if attention_mask.ndim == 2:  # a [B,T] padding mask: make it causal
            attention_mask = causal_mask(attention_mask)
        if attention_mask.shape != (B, T, T):
            raise ValueError(f"attention_mask must be [B,T,T]=({B},{T},{T}) or [B,T], got {attention_mask.shape}")
        h, _ = self._decoder(input_ids, positions, attention_mask, use_lora, lora_dropout=lora_dropout)
        return h

    def extend(self, input_ids, positions, attention_mask, cache: KVCache, index, use_lora: bool = True):
        """Run T new tokens against a KV cache, for decoding.

        input_ids, positions int [B,T]; the tokens' keys and values are written to cache slots
        ``index .. index+T`` (a traced int is fine); attention_mask bool [B,T,S] over all S
        cache slots, True where a new token may attend a slot (itself included), so the caller
        decides which slots hold a row's earlier tokens. Returns (hidden state after the final
        RMSNorm [B,T,D] float32, updated cache)."""
        input_ids = jnp.asarray(input_ids)
        B, T = input_ids.shape
        attention_mask = jnp.asarray(attention_mask, bool)
        if attention_mask.shape != (B, T, cache.slots):
            raise ValueError(f"attention_mask must be [B,T,S]=({B},{T},{cache.slots}), got {attention_mask.shape}")
        return self._decoder(input_ids, jnp.asarray(positions), attention_mask, use_lora, cache, index)

    def _decoder(self, input_ids, positions, attention_mask, use_lora, cache=None, index=None,
                 lora_dropout=None):
        """Embedding, the scanned decoder layers and the final norm -> (hidden f32, cache).
        Each layer draws its LoRA dropout from its own key (the layer index folded in)."""
        cos, sin = rope_cos_sin(self.config, positions)
        h = self.embed_tokens(input_ids)

        graphdef, state = nnx.split(self.layers)

        def body(carry, xs):
            h, cache = carry
            layer_state, i = xs
            layer = nnx.merge(graphdef, layer_state)
            drop = None if lora_dropout is None else (lora_dropout[0], jax.random.fold_in(lora_dropout[1], i))
            return layer.layer(h, cos, sin, attention_mask, use_lora, cache, i, index, drop), None

        if self.config.remat:
            body = jax.checkpoint(body)
        layer_index = jnp.arange(self.config.num_hidden_layers, dtype=jnp.int32)
        (h, cache), _ = jax.lax.scan(body, (h, cache), (state, layer_index))
        return self.norm(h).astype(jnp.float32), cache

    def lm_head(self, hidden):
        """Logits [..., V] in float32 (tied to the embedding or a separate head)."""
        if self.lm_head_proj is None:
            return self.embed_tokens.attend(hidden)
        return self.lm_head_proj(hidden)


def causal_mask(attention_mask_1d):
    """[B,T] bool/int padding mask -> [B,T,T] causal mask that also hides padded keys."""
    m = jnp.asarray(attention_mask_1d).astype(bool)
    T = m.shape[-1]
    tri = jnp.tril(jnp.ones((T, T), bool))
    return tri[None] & m[:, None, :]


def segment_mask(segment_ids):
    """[B,T] int segment ids (0 = padding) -> causal block-diagonal [B,T,T] mask for packing."""
    s = jnp.asarray(segment_ids)
    T = s.shape[-1]
    tri = jnp.tril(jnp.ones((T, T), bool))
    same = (s[:, :, None] == s[:, None, :]) & (s[:, None, :] > 0)
    return tri[None] & same
