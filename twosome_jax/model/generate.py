"""Batched text generation with the LLaMA: greedy or temperature/top-p sampling, stopping at EOS.

    ids, lens = pad_prompts([tok(p)["input_ids"] for p in prompts], pad_id=tok.pad_token_id)
    out = generate(graphdef, base, lora, ids, lens, max_new_tokens=100, eos_id=tok.eos_token_id,
                   temperature=0.7, top_p=0.9, key=jax.random.key(0))
    texts = [tok.decode(t[:n]) for t, n in zip(out.tokens, out.lengths)]

The whole decode is one jitted call: a prefill of the prompts, then one token per step for the
whole batch under ``lax.while_loop``, which ends when every row has produced an EOS or after
``max_new_tokens`` tokens (static, so each (batch, prompt width, max_new_tokens) compiles once;
callers bucket prompt widths to bound recompiles).

Layout. Prompts come right-padded: row b's prompt is ``prompt_ids[b, :prompt_len[b]]``. Cache slots
0..P-1 hold the prompts (a row's padding slots are masked out) and the token fed at step t goes to
slot P + t - 1 in every row, so one ``dynamic_update_slice`` writes the batch. Positions are
explicit per row (prompt token i at position i, the j-th generated token at prompt_len + j), so
RoPE sees each row as if it were unpadded and a padded batch decodes the same tokens as the
prompts one at a time.

A shared prefix. When every prompt of a batch starts with the same tokens (a fixed system turn),
``prefix_cache`` runs them once and ``generate(..., prefix=...)`` takes only what follows them:
the prefix's keys and values fill cache slots 0..Q-1 of every row, the prompts follow in slots
Q..Q+P-1 at positions from Q, and generation proceeds as above. The tokens are those of the
full prompts generated without it (tests/test_generate.py).

``use_cache=False`` runs the same loop recomputing the whole sequence at every step (prefix
included); it is the baseline the KV cache is measured against (benchmarks/test_generate.py),
not a mode to use.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .functional import apply_hidden, apply_hidden_cached, apply_lm_head
from .kv_cache import KVCache, PrefixCache


class Generation(NamedTuple):
    tokens: jax.Array  # int32 [B, max_new_tokens]: generated ids, pad_id after a row's EOS
    lengths: jax.Array  # int32 [B]: tokens generated per row, its EOS included


def pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int, width: int | None = None):
    """Token id lists -> right-padded int32 ids [B, width] and lengths [B] (numpy).

    ``width`` defaults to the longest prompt; a fixed width keeps one compiled ``generate``."""
    lengths = np.array([len(p) for p in prompts], np.int32)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("every prompt needs at least one token")
    width = int(lengths.max()) if width is None else int(width)
    if lengths.max() > width:
        raise ValueError(f"a prompt of {lengths.max()} tokens does not fit width {width}")
    ids = np.full((len(prompts), width), pad_id, np.int32)
    for row, p in zip(ids, prompts):
        row[:len(p)] = p
    return ids, lengths


def prefix_cache(graphdef, base, lora, prefix_ids: Sequence[int], *, use_lora: bool = True) -> PrefixCache:
    """The keys and values of ``prefix_ids`` (one token list, at positions 0..Q-1), for
    ``generate(..., prefix=...)``. Valid for these weights only: rebuild it when they change."""
    ids = np.asarray(prefix_ids, np.int32)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"prefix_ids must be a non-empty list of token ids, got shape {ids.shape}")
    return PrefixCache(jnp.asarray(ids), _prefix_kv(graphdef, base, lora, jnp.asarray(ids)[None], use_lora=bool(use_lora)),
                       bool(use_lora))


@functools.partial(jax.jit, static_argnums=0, static_argnames=("use_lora",))
def _prefix_kv(graphdef, base, lora, ids, *, use_lora):
    config = nnx.merge(graphdef, base, lora).config
    Q = ids.shape[1]
    causal = jnp.tril(jnp.ones((Q, Q), bool))[None]
    positions = jnp.arange(Q, dtype=jnp.int32)[None]
    _, cache = apply_hidden_cached(graphdef, base, lora, ids, positions, causal, KVCache.empty(config, 1, Q), 0,
                                   use_lora=use_lora)
    return cache


def generate(graphdef, base, lora, prompt_ids, prompt_len, *, max_new_tokens: int,
             eos_id: int | Sequence[int] | None = None, pad_id: int | None = None,
             temperature: float = 0.0, top_p: float = 1.0, key=None, use_lora: bool = True,
             use_cache: bool = True, prefix: PrefixCache | None = None) -> Generation:
    """Continue each right-padded prompt by up to ``max_new_tokens`` tokens.

    temperature 0 decodes greedily (argmax, as transformers' ``do_sample=False``); above 0 it
    samples from softmax(logits / temperature) restricted to the top-p nucleus (the most likely
    tokens whose probability mass before them is below ``top_p``, so the most likely one always
    stays), drawing step t with ``fold_in(key, t)``: the same key gives the same tokens. A row
    stops after its first token in ``eos_id`` (one id or several); the rest of its row is
    ``pad_id`` (default: the first EOS id, else 0). use_lora: decode with the adapters in ``lora``.
    prefix: a :func:`prefix_cache` of the tokens every prompt starts with; ``prompt_ids`` are then
    the tokens after it (at least one per row).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature > 0 and key is None:
        raise ValueError("sampling (temperature > 0) needs a key")
    PrefixCache.check(prefix, use_lora, "decode")
    eos_ids = np.zeros((0,), np.int32) if eos_id is None else np.atleast_1d(np.asarray(eos_id, np.int32))
    if pad_id is None:
        pad_id = int(eos_ids[0]) if eos_ids.size else 0
    prompt_ids = jnp.asarray(prompt_ids, jnp.int32)
    prompt_len = jnp.asarray(prompt_len, jnp.int32)
    if prompt_ids.ndim != 2 or prompt_len.shape != prompt_ids.shape[:1]:
        raise ValueError(f"prompt_ids must be [B,P] and prompt_len [B], got {prompt_ids.shape} and {prompt_len.shape}")
    sample = temperature > 0
    # only what fixes the program's shape or structure is static: sampling settings, EOS and pad
    # ids are values, so changing them reuses the compiled decode
    return _generate(graphdef, base, lora, prompt_ids, prompt_len, prefix, jnp.asarray(eos_ids), jnp.int32(pad_id),
                     key if sample else None, jnp.float32(temperature), jnp.float32(top_p),
                     max_new_tokens=int(max_new_tokens), sample=sample, use_lora=bool(use_lora),
                     use_cache=bool(use_cache))


def _pick(logits, key, temperature, top_p):
    """Next token ids [B] from logits [B, V] (float32); greedy where ``key`` is None.

    Sampling inverts the CDF of the nucleus with one uniform per row: a Gumbel-max draw
    (``jax.random.categorical``) needs V random numbers per row, ~50 ms per step for 8 rows of
    SmolLM2's 49k vocabulary (timed by hand on a 2-core Intel Xeon for daf97fc, 2026-12-01; no
    result file records it)."""
    if key is None:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    probs = _nucleus(jax.nn.softmax(logits / temperature, axis=-1), top_p)
    cdf = jnp.cumsum(probs, axis=-1)
    u = 1.0 - jax.random.uniform(key, (probs.shape[0], 1), jnp.float32)  # in (0, 1]
    return jnp.sum(cdf < u * cdf[:, -1:], axis=-1).astype(jnp.int32)  # the first token whose CDF reaches u


def _nucleus(probs, top_p):
    """probs [B, V] with the tokens outside the top-p nucleus set to 0.

    The nucleus is the most likely tokens whose probability mass before them is below top_p;
    its smallest probability is the largest c with mass(p >= c) >= top_p. Non-negative floats
    order like their bit patterns, so 31 halvings of the int32 range find c exactly: 31 masked
    sums over the vocabulary, where sorting it costs several times more on CPU. Tokens tied with the
    smallest kept probability are kept too."""
    bits = jax.lax.bitcast_convert_type(probs, jnp.int32)

    def halve(_, bounds):  # invariant: mass(p >= lo) >= top_p > mass(p >= hi)
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(jnp.where(bits >= mid, probs, 0.0), axis=-1, keepdims=True) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.zeros(probs.shape[:-1] + (1,), jnp.int32)
    lo, _ = jax.lax.fori_loop(0, 31, halve, (lo, jnp.max(bits, axis=-1, keepdims=True) + 1))
    return jnp.where((bits >= lo) | (top_p >= 1.0), probs, 0.0)  # top_p = 1: all, whatever the rounding


@functools.partial(jax.jit, static_argnums=0, static_argnames=("max_new_tokens", "sample", "use_lora", "use_cache"))
def _generate(graphdef, base, lora, prompt_ids, prompt_len, prefix, eos_ids, pad_id, key, temperature, top_p, *,
              max_new_tokens, sample, use_lora, use_cache):
    config = nnx.merge(graphdef, base, lora).config
    B, P = prompt_ids.shape
    Q = 0 if prefix is None else prefix.length  # slots 0..Q-1: the shared prefix
    N = max_new_tokens
    S = Q + P + N - 1  # the last generated token is never fed back
    slot = jnp.arange(S, dtype=jnp.int32)
    prompt_held = slot[None, :] < Q + prompt_len[:, None]  # [B, S]

    def held_after(t):
        """Slots holding a row's tokens once the token of step t is written (t = 0: the prompt)."""
        return prompt_held | ((slot[None, :] >= Q + P) & (slot[None, :] < Q + P + t))

    if use_cache:
        def forward(state, ids, pos, index, held):
            query = index + jnp.arange(ids.shape[1], dtype=jnp.int32)
            mask = held[:, None, :] & (slot[None, None, :] <= query[None, :, None])
            return apply_hidden_cached(graphdef, base, lora, ids, pos, mask, state, index, use_lora=use_lora)

        state = KVCache.empty(config, B, S) if prefix is None else prefix.expand(B, S)
    else:
        def forward(state, ids, pos, index, held):
            seq_ids = jax.lax.dynamic_update_slice(state[0], ids, (0, index))
            seq_pos = jax.lax.dynamic_update_slice(state[1], pos, (0, index))
            mask = held[:, None, :] & (slot[None, None, :] <= slot[None, :, None])
            hidden = apply_hidden(graphdef, base, lora, seq_ids, seq_pos, mask, use_lora=use_lora)
            return jax.lax.dynamic_slice_in_dim(hidden, index, ids.shape[1], axis=1), (seq_ids, seq_pos)

        state = (jnp.zeros((B, S), jnp.int32), jnp.zeros((B, S), jnp.int32))
        if prefix is not None:
            state = (state[0].at[:, :Q].set(prefix.ids[None]), state[1].at[:, :Q].set(jnp.arange(Q, dtype=jnp.int32)[None]))

    def next_token(hidden, t):
        logits = apply_lm_head(graphdef, base, lora, hidden)
        return _pick(logits, jax.random.fold_in(key, t) if sample else None, temperature, top_p)

    def is_eos(tok):
        return jnp.any(tok[:, None] == eos_ids[None, :], axis=-1)

    positions = jnp.broadcast_to(Q + jnp.arange(P, dtype=jnp.int32), (B, P))
    hidden, state = forward(state, prompt_ids, positions, Q, held_after(0))
    tok = next_token(hidden[jnp.arange(B), prompt_len - 1], 0)
    tokens = jnp.full((B, N), pad_id, jnp.int32).at[:, 0].set(tok)
    carry = (jnp.int32(1), tok, tokens, jnp.ones((B,), jnp.int32), is_eos(tok), state)

    def cond(carry):
        t, _, _, _, done, _ = carry
        return (t < N) & ~jnp.all(done)

    def body(carry):
        t, tok, tokens, lengths, done, state = carry
        index = Q + P + t - 1
        hidden, state = forward(state, tok[:, None], (Q + prompt_len + t - 1)[:, None], index, held_after(t))
        new = jnp.where(done, pad_id, next_token(hidden[:, 0], t))
        tokens = jax.lax.dynamic_update_slice(tokens, new[:, None], (0, t))
        return t + 1, new, tokens, lengths + (~done).astype(jnp.int32), done | is_eos(new), state

    _, _, tokens, lengths, _, _ = jax.lax.while_loop(cond, body, carry)
    return Generation(tokens, lengths)
