"""The key/value cache of the LLaMA's attention, for decoding one token at a time.

One array per kind, stacked over layers like the weights: ``k`` and ``v`` are
[L, B, S, kv_heads, head_dim] with S cache slots per row. A forward pass over T new tokens
(``Llama.extend``) writes their keys and values into slots ``index .. index+T`` of every layer and
attends over all S slots, so what a query may see is the caller's mask over slots. Slots are not
positions: RoPE is applied before a key is stored, with the positions the caller gives, so a
row's tokens may sit anywhere in the cache (a padded prompt leaves masked gaps) without changing
the result. Only the new tokens are written (``dynamic_update_slice`` on the whole stacked array),
so inside a loop XLA updates the cache in place instead of copying it per step.

``PrefixCache`` holds the keys and values of a prefix shared by a batch of prompts, computed once
(``generate.prefix_cache``) and copied into the first slots of every row's cache.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from .config import LlamaConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    k: jax.Array  # [L, B, S, K, hd], keys after RoPE
    v: jax.Array  # [L, B, S, K, hd]

    @classmethod
    def empty(cls, config: LlamaConfig, batch: int, slots: int) -> "KVCache":
        """A zeroed cache in the model's compute dtype (bfloat16 on accelerators)."""
        shape = (config.num_hidden_layers, batch, slots, config.num_key_value_heads, config.head_dim)
        return cls(jnp.zeros(shape, config.dtype), jnp.zeros(shape, config.dtype))

    @property
    def slots(self) -> int:
        return self.k.shape[2]

    def write(self, layer, index, k, v) -> "KVCache":
        """Store ``k``, ``v`` [B, T, K, hd] of ``layer`` in slots ``index .. index+T``."""
        zero = jnp.zeros((), jnp.int32)
        at = (jnp.asarray(layer, jnp.int32), zero, jnp.asarray(index, jnp.int32), zero, zero)
        return KVCache(jax.lax.dynamic_update_slice(self.k, k[None].astype(self.k.dtype), at),
                       jax.lax.dynamic_update_slice(self.v, v[None].astype(self.v.dtype), at))

    def layer(self, layer):
        """(k, v) of one layer, each [B, S, K, hd]."""
        return self.k[layer], self.v[layer]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PrefixCache:
    """The keys and values of a token prefix that every prompt of a batch starts with.

    A prompt family with a fixed head (RLAdapter's analyst prompts share their system turn) need
    not recompute that head for every prompt in every round: it is run once, for one row, and
    :meth:`expand` copies its keys and values into the first slots of each row's cache. Keys are
    stored after RoPE at positions ``0 .. length-1``, so the prompts after it take positions from
    ``length`` on. The cache holds the result of one set of weights: built with other adapters
    (or ``use_lora`` otherwise) than the decode uses, it silently gives another model's prefix,
    so rebuild it whenever the weights change; ``use_lora`` is recorded and checked."""

    ids: jax.Array  # int32 [Q]: the prefix's tokens (the uncached baseline recomputes from them)
    kv: KVCache  # one row, Q slots
    use_lora: bool = dataclasses.field(metadata=dict(static=True))

    @property
    def length(self) -> int:
        return self.ids.shape[0]

    @staticmethod
    def check(prefix, use_lora: bool, user: str) -> None:
        """One-line ValueError unless ``prefix`` is None or a PrefixCache built with ``use_lora``
        (``user`` names the computation in the message: "decode", "scoring")."""
        if prefix is None:
            return
        if not isinstance(prefix, PrefixCache):
            raise ValueError(f"prefix must be a PrefixCache (from prefix_cache), got {type(prefix).__name__}")
        if prefix.use_lora != bool(use_lora):
            raise ValueError(f"the prefix cache was built with use_lora={prefix.use_lora}; "
                             f"this {user} has use_lora={bool(use_lora)}")

    def expand(self, batch: int, slots: int) -> KVCache:
        """A cache of ``slots`` slots for ``batch`` rows; slots ``0 .. length-1`` of every row
        hold the prefix, the rest are zero."""
        L, _, Q, K, hd = self.kv.k.shape
        if slots < Q:
            raise ValueError(f"a cache of {slots} slots cannot hold a prefix of {Q} tokens")

        def grow(x):
            rows = jnp.broadcast_to(x, (L, batch, Q, K, hd))
            return jnp.concatenate([rows, jnp.zeros((L, batch, slots - Q, K, hd), x.dtype)], axis=2)

        return KVCache(grow(self.kv.k), grow(self.kv.v))
