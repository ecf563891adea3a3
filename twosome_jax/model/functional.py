"""Pure-function view of the model for jit / grad w.r.t. the LoRA adapters only.

    graphdef, base, lora = split_model(model)
    hidden = apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=True)
    logits = apply_lm_head(graphdef, base, lora, hidden)
    grads = jax.grad(lambda lora: loss(apply_hidden(graphdef, base, lora, ...)))(lora)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .llama import Llama, LoRAParam


def split_model(model: Llama):
    """-> (graphdef, base, lora): frozen ``nnx.Param`` state and ``LoRAParam`` state."""
    graphdef, base, lora = nnx.split(model, nnx.Param, LoRAParam)
    return graphdef, base, lora


def apply_hidden(graphdef, base, lora, input_ids, positions=None, attention_mask=None,
                 use_lora: bool = True, lora_dropout=None):
    """Final-RMSNorm hidden state [B,T,D] float32. Pure: safe under jit/grad/vmap.
    ``lora_dropout``: ``(rate, key)`` while training the adapters, else ``None`` (``Llama``)."""
    model = nnx.merge(graphdef, base, lora)
    return model(input_ids, positions, attention_mask, use_lora=use_lora, lora_dropout=lora_dropout)


def apply_hidden_cached(graphdef, base, lora, input_ids, positions, attention_mask, cache, index,
                        use_lora: bool = True):
    """``Llama.extend``: T new tokens against a KV cache -> (hidden [B,T,D] float32, cache)."""
    model = nnx.merge(graphdef, base, lora)
    return model.extend(input_ids, positions, attention_mask, cache, index, use_lora=use_lora)


def apply_lm_head(graphdef, base, lora, hidden):
    """Logits [..., V] float32 from hidden states."""
    model = nnx.merge(graphdef, base, lora)
    return model.lm_head(hidden)


def apply_logits(graphdef, base, lora, input_ids, positions=None, attention_mask=None,
                 use_lora: bool = True):
    model = nnx.merge(graphdef, base, lora)
    return model.lm_head(model(input_ids, positions, attention_mask, use_lora=use_lora))


def token_logprobs(logits, targets):
    """log softmax(logits)[..., targets] in float32. logits [..., V], targets int [...]."""
    lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(lp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
