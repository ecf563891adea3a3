"""LLaMA configuration (a frozen dataclass, hashable so it can be a static jit argument)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_ROPE_TYPES = ("default", "llama3", "linear")


def _freeze(d: dict | None):
    """A hashable, order-independent representation of a rope-scaling dict."""
    if d is None:
        return None
    return tuple(sorted((str(k), v) for k, v in d.items()))


def default_dtype() -> jnp.dtype:
    """float32 on CPU, bfloat16 on accelerators."""
    return jnp.dtype(jnp.float32) if jax.default_backend() == "cpu" else jnp.dtype(jnp.bfloat16)


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # llama3 / linear scaling parameters as in config.json, stored as a sorted tuple of
    # (key, value) pairs so the config stays hashable; use `rope_scaling_dict`.
    rope_scaling: tuple | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    dtype: Any = jnp.float32  # compute dtype of activations
    param_dtype: Any = jnp.float32  # dtype of the frozen base weights
    remat: bool = False  # rematerialise each decoder layer in the backward pass

    def __post_init__(self):
        # normalise rope_scaling given as a dict and dtypes given as strings
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", _freeze(self.rope_scaling))
        object.__setattr__(self, "dtype", jnp.dtype(self.dtype))
        object.__setattr__(self, "param_dtype", jnp.dtype(self.param_dtype))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        rs = self.rope_scaling_dict
        if rs is not None and rs.get("rope_type", "default") not in _ROPE_TYPES:
            raise ValueError(
                f"unsupported rope_type {rs.get('rope_type')!r}; supported: {', '.join(_ROPE_TYPES)}"
            )

    @property
    def rope_scaling_dict(self) -> dict | None:
        return None if self.rope_scaling is None else dict(self.rope_scaling)

    @property
    def num_kv_groups(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def replace(self, **kw) -> "LlamaConfig":
        return dataclasses.replace(self, **kw)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_hf_dict(cls, d: dict, **overrides) -> "LlamaConfig":
        """Build from a Hugging Face ``config.json`` dict (transformers 4.x or 5.x layout)."""
        hidden = int(d["hidden_size"])
        n_heads = int(d["num_attention_heads"])
        n_kv = int(d.get("num_key_value_heads") or n_heads)
        head_dim = int(d.get("head_dim") or hidden // n_heads)
        # transformers 5 writes `rope_parameters` (with rope_theta inside); 4.x writes
        # `rope_theta` and `rope_scaling` at top level.
        rope = d.get("rope_parameters") or d.get("rope_scaling") or None
        rope = dict(rope) if rope else None
        theta = d.get("rope_theta")
        if rope is not None:
            theta = rope.pop("rope_theta", theta)
            if float(rope.pop("partial_rotary_factor", 1.0)) != 1.0:
                raise ValueError("partial_rotary_factor != 1 is not supported")
            if "type" in rope and "rope_type" not in rope:
                rope["rope_type"] = rope.pop("type")
            if rope.get("rope_type", "default") == "default" and len(
                [k for k in rope if k != "rope_type"]
            ) == 0:
                rope = None
        if theta is None:
            theta = 10000.0
        eos = d.get("eos_token_id")
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {d.get('hidden_act')!r}; only 'silu'")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise ValueError("attention_bias / mlp_bias are not supported")
        kw = dict(
            vocab_size=int(d["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv,
            head_dim=head_dim,
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=rope,
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=eos,
            pad_token_id=d.get("pad_token_id"),
            initializer_range=float(d.get("initializer_range", 0.02)),
        )
        kw.update(overrides)
        return cls(**kw)

    def to_hf_dict(self) -> dict:
        """A ``config.json``-style dict that transformers' LlamaConfig accepts."""
        d = dict(
            architectures=["LlamaForCausalLM"],
            model_type="llama",
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            initializer_range=self.initializer_range,
            hidden_act="silu",
        )
        if self.rope_scaling is not None:
            d["rope_scaling"] = self.rope_scaling_dict
        return d

    @classmethod
    def from_json_file(cls, path, **overrides) -> "LlamaConfig":
        with open(path) as f:
            return cls.from_hf_dict(json.load(f), **overrides)

    @classmethod
    def tiny(cls, vocab_size: int = 512, **overrides) -> "LlamaConfig":
        """A small LLaMA for tests: 2 layers, GQA 4/2 heads, head_dim 16."""
        kw = dict(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        )
        kw.update(overrides)
        return cls(**kw)


def rope_inv_freq(config: LlamaConfig) -> np.ndarray:
    """Inverse frequencies [head_dim/2] (float32) as transformers computes them."""
    dim = config.head_dim
    inv = 1.0 / (
        np.float32(config.rope_theta) ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim))
    )
    inv = inv.astype(np.float32)
    rs = config.rope_scaling_dict
    if rs is None:
        return inv
    kind = rs.get("rope_type", "default")
    if kind == "linear":
        return (inv / np.float32(rs["factor"])).astype(np.float32)
    if kind == "llama3":
        factor = rs["factor"]
        low = rs["low_freq_factor"]
        high = rs["high_freq_factor"]
        old = rs.get("original_max_position_embeddings", config.max_position_embeddings)
        low_wl = old / low
        high_wl = old / high
        wavelen = 2 * np.pi / inv
        inv_l = np.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        return np.where(medium, smoothed, inv_l).astype(np.float32)
    return inv
