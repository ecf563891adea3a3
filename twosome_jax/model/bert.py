"""A Flax NNX BERT encoder in float32: the architecture of sentence encoders like all-MiniLM-L6-v2.

Post-LayerNorm layers of self-attention and a GELU feed-forward block, after word + position +
token-type embeddings and a LayerNorm, as transformers' ``BertModel`` computes them. Parameter
names follow Hugging Face's so that loading is a rename (``HF_LAYER_NAMES``) plus a transpose of
the dense kernels (``x @ kernel``, [in, out]). Like the LLaMA (``llama.py``) the layers are
stacked, every weight with a leading layer axis, and run with ``lax.scan``, so one layer is
traced and compiled whatever the depth. The pooler is left out: sentence encoders pool the
token states themselves.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .loading import _unflatten

# our name inside the stacked layers -> the HF name after "encoder.layer.{i}."
HF_LAYER_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "output_norm": "output.LayerNorm",
}
HF_EMBEDDING_NAMES = {
    "word_embeddings": "embeddings.word_embeddings.weight",
    "position_embeddings": "embeddings.position_embeddings.weight",
    "token_type_embeddings": "embeddings.token_type_embeddings.weight",
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_hf_dict(cls, d: dict) -> "BertConfig":
        """From a transformers ``config.json``; raises ValueError for what this encoder does not
        compute (another activation, relative positions, heads that do not divide the width)."""
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"model_type {d.get('model_type')!r} is not supported; only 'bert'")
        if d.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {d['hidden_act']!r} is not supported; only 'gelu'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {d['position_embedding_type']!r} is not supported; "
                             "only 'absolute'")
        config = cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of "
                             f"num_attention_heads {config.num_attention_heads}")
        return config


class Dense(nnx.Module):
    """``x @ kernel + bias``; kernel [*lead, in, out], bias [*lead, out] (lead: the layer axis)."""

    def __init__(self, lead, in_features, out_features):
        self.kernel = nnx.Param(jnp.zeros((*lead, in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((*lead, out_features), jnp.float32))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class LayerNorm(nnx.Module):
    def __init__(self, lead, features, eps):
        self.scale = nnx.Param(jnp.ones((*lead, features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((*lead, features), jnp.float32))
        self.eps = eps

    def __call__(self, x):
        mean = jnp.mean(x, -1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class Embeddings(nnx.Module):
    def __init__(self, config: BertConfig):
        D = config.hidden_size
        self.word_embeddings = nnx.Param(jnp.zeros((config.vocab_size, D), jnp.float32))
        self.position_embeddings = nnx.Param(jnp.zeros((config.max_position_embeddings, D), jnp.float32))
        self.token_type_embeddings = nnx.Param(jnp.zeros((config.type_vocab_size, D), jnp.float32))
        self.LayerNorm = LayerNorm((), D, config.layer_norm_eps)

    def __call__(self, input_ids):
        """Single-segment input (token type 0 everywhere), positions 0..T-1 (right padding)."""
        T = input_ids.shape[1]
        h = (jnp.take(self.word_embeddings[...], input_ids, axis=0)
             + self.position_embeddings[:T][None] + self.token_type_embeddings[0])
        return self.LayerNorm(h)


class EncoderLayers(nnx.Module):
    """All encoder layers, every weight with a leading layer axis; run with ``lax.scan``."""

    def __init__(self, config: BertConfig):
        L, D, F, eps = (config.num_hidden_layers,), config.hidden_size, config.intermediate_size, config.layer_norm_eps
        self.query, self.key, self.value = Dense(L, D, D), Dense(L, D, D), Dense(L, D, D)
        self.attention_output = Dense(L, D, D)
        self.attention_norm = LayerNorm(L, D, eps)
        self.intermediate = Dense(L, D, F)
        self.output = Dense(L, F, D)
        self.output_norm = LayerNorm(L, D, eps)
        self.num_heads = config.num_attention_heads

    def layer(self, h, mask):
        """One layer on a module merged with one layer's slice. h [B,T,D]; mask [B,T] bool keys."""
        B, T, D = h.shape
        H = self.num_heads
        heads = lambda x: x.reshape(B, T, H, D // H).transpose(0, 2, 1, 3)  # [B,H,T,hd]: batch axes first
        q, k, v = heads(self.query(h)), heads(self.key(h)), heads(self.value(h))
        scores = jnp.einsum("bhtd,bhsd->bhts", q, k) / math.sqrt(D // H)
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        # softmax with the division after the value product: [T, hd] divisions instead of [T, S]
        # (with the head-major layout, several times faster on CPU than jax.nn.softmax on [B,T,H,hd])
        weights = jnp.exp(scores - scores.max(-1, keepdims=True))
        context = jnp.einsum("bhts,bhsd->bhtd", weights, v) / weights.sum(-1)[..., None]
        context = context.transpose(0, 2, 1, 3).reshape(B, T, D)
        h = self.attention_norm(h + self.attention_output(context))
        ffn = self.output(jax.nn.gelu(self.intermediate(h), approximate=False))  # HF "gelu" is erf's
        return self.output_norm(h + ffn)


class Bert(nnx.Module):
    """``model(input_ids, attention_mask)`` -> the last layer's token states [B,T,D] float32.

    Built with zeros (LayerNorm scales one): it is meant to be filled from a checkpoint
    (``from_hf_tensors``)."""

    def __init__(self, config: BertConfig):
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = EncoderLayers(config)

    def __call__(self, input_ids, attention_mask):
        """input_ids int [B,T]; attention_mask [B,T], true at real tokens (keys that may be attended)."""
        mask = jnp.asarray(attention_mask).astype(bool)
        graphdef, state = nnx.split(self.layers)

        def body(h, layer_state):
            return nnx.merge(graphdef, layer_state).layer(h, mask), None

        h, _ = jax.lax.scan(body, self.embeddings(jnp.asarray(input_ids)), state)
        return h


def hf_tensor_names(config: BertConfig) -> dict[tuple[str, ...], list[str]]:
    """Our parameter path -> the HF tensor names it is built from (one per layer for the stack)."""
    names = {("embeddings", ours): [hf] for ours, hf in HF_EMBEDDING_NAMES.items()}
    names[("embeddings", "LayerNorm", "scale")] = ["embeddings.LayerNorm.weight"]
    names[("embeddings", "LayerNorm", "bias")] = ["embeddings.LayerNorm.bias"]
    for ours, hf in HF_LAYER_NAMES.items():
        weight = "scale" if ours.endswith("norm") else "kernel"
        for leaf, hf_leaf in ((weight, "weight"), ("bias", "bias")):
            names[("layers", ours, leaf)] = [f"encoder.layer.{i}.{hf}.{hf_leaf}"
                                              for i in range(config.num_hidden_layers)]
    return names


def from_hf_tensors(config: BertConfig, get) -> Bert:
    """A ``Bert`` whose weights are ``get(hf_name)`` (numpy, HF layout: dense weights [out, in]).
    Raises ValueError naming a tensor whose shape does not fit ``config``."""
    model = nnx.eval_shape(lambda: Bert(config))
    graphdef, state = nnx.split(model)
    names = hf_tensor_names(config)
    flat = {}
    for path, var in nnx.to_flat_state(state):
        want = var.get_value().shape
        parts = []
        for name in names[tuple(path)]:
            a = np.asarray(get(name), np.float32)
            a = a.T if path[-1] == "kernel" else a
            expected = want[1:] if path[0] == "layers" else want
            if a.shape != tuple(expected):
                raise ValueError(f"tensor {name} has shape {a.shape}, expected {tuple(expected)} for this config")
            parts.append(a)
        flat[tuple(path)] = jnp.asarray(np.stack(parts) if path[0] == "layers" else parts[0])
    nnx.replace_by_pure_dict(state, _unflatten(flat))
    return nnx.merge(graphdef, state)

