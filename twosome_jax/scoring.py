"""Per-action joint log-probabilities: the TWOSOME policy head.

For an observation with prompt ``p`` and candidate actions ``a_1..a_A`` the policy scores
each action by ``log P(a_k | p)``, the summed log-probabilities of the tokens of ``p + " " +
a_k`` that lie beyond the prompt's own tokens (the joining rule of the reference; the token
tables of the environments produce exactly these ids, see ``envs_jax``).

Inputs are token tables, any object with the fields of ``envs_jax``'s ``TextTokens``:
``prompt_ids [N,P]``, ``prompt_len [N]``, ``action_ids [N,A,L]``, ``action_len [N,A]``,
``action_words [N,A]``, ``action_mask [N,A]`` (right padded).

Two implementations with one interface:

* ``naive``: every prompt+action pair is its own sequence ``[N*A, P+L]``, as the reference
  does. The prompt is read A times.
* ``packed``: one sequence per observation, ``[N, P + S]``: the prompt, then the real tokens of
  every action back to back (tight packing), padded only to ``S = action_tokens_max``, the
  largest total of action tokens any observation has (22 for tomato salad with SmolLM2,
  against A*L = 40 padded slots). A block mask by action id lets action k's tokens see the
  prompt's real tokens and the earlier tokens of their own action only, and positions restart
  at the prompt length in every action, so each action sees exactly the context it would see
  alone. The prompt is read once, and the LM head runs on the S predicting hidden states only
  (gathered: the last real prompt token for an action's first token, the previous slot
  otherwise).

``S`` must be static under ``jit``: pass ``action_tokens_max`` (``max_action_tokens`` computes
it on the host from the token tables of every observation an environment can produce). Left
``None`` it is the exact bound of the batch when the tables are concrete, and ``A*L`` (always
safe, no saving) when they are traced. A bound smaller than a row's total silently drops that
row's last tokens, so it must cover every observation.

A shared prefix. When every prompt of a batch starts with the same tokens (a fixed system turn),
``prefix`` (a ``model.generate.prefix_cache`` of them) saves reading them again for every prompt:
the token tables' prompts are then the tokens *after* the prefix (at least one per row), the
prefix's keys and values fill slots 0..Q-1 of every row's KV cache, the sequence of either
layout follows in slots Q.. at positions shifted by Q, and every query sees all prefix slots plus
what its mask allows, so the scores are those of the full prompts without it
(tests/test_scoring.py). The prefix is a constant: no gradient flows into its keys and values.

``naive`` keeps the reference's layout and evaluates the LM head at the A*L (padded) predicting
positions, never over the whole sequence: for SmolLM2 the head is a 49k x 576 matmul, a large
share of the per-token cost.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from envs_jax.text import encode_descriptions, max_action_tokens
from twosome_jax.choices import NORMALIZATIONS, SCORINGS
from twosome_jax.model.functional import apply_hidden, apply_hidden_cached, apply_lm_head
from twosome_jax.model.kv_cache import PrefixCache
from twosome_jax.trie_scoring import action_slots, default_width, trie_layout, trie_level, trie_levels, trie_token_logprobs

IMPLEMENTATIONS = SCORINGS


def _check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def _static_action_tokens_max(tokens, action_tokens_max):
    """The static length S of the packed action region."""
    A, L = tokens.action_ids.shape[-2:]
    if action_tokens_max is not None:
        S = int(action_tokens_max)
        if S <= 0:
            raise ValueError(f"action_tokens_max must be positive, got {action_tokens_max}")
        return S
    try:  # concrete token tables: the exact bound of this batch
        return max(max_action_tokens(tokens), 1)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return A * L  # traced (inside jit): the padded bound, always safe


def _packed_layout(tokens, S):
    """Tight packing of one observation's actions after its prompt.

    Returns ids [N,P+S], positions [N,P+S], mask [N,P+S,P+S], the index of the hidden state that
    predicts each action slot [N,S], the slot's action id [N,S] (A for padding slots), and
    whether the slot holds a real token [N,S].
    """
    prompt_ids, prompt_len = tokens.prompt_ids, tokens.prompt_len
    N, P = prompt_ids.shape
    T = P + S
    block, offset, real, act, _ = action_slots(tokens, S)
    j = jnp.arange(S, dtype=jnp.int32)
    ids = jnp.concatenate([prompt_ids, act], axis=1).astype(jnp.int32)
    positions = jnp.concatenate(
        [jnp.broadcast_to(jnp.arange(P, dtype=jnp.int32), (N, P)), prompt_len[:, None] + offset],
        axis=1).astype(jnp.int32)

    idx = jnp.arange(T)
    causal = idx[None, :] <= idx[:, None]  # [T,T] query t, key s
    key_prompt = (idx[None, :] < P) & (idx[None, :] < prompt_len[:, None])  # [N,T] real prompt keys
    seg = jnp.concatenate([jnp.full((N, P), -1, jnp.int32), block], axis=1)  # [N,T] -1 = prompt
    same_action = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] >= 0)
    # every token sees the real prompt tokens before it; an action token also sees the earlier
    # tokens of its own action (padding slots form one more "action" and see only themselves
    # and the prompt; nothing real sees them).
    mask = causal[None] & (key_prompt[:, None, :] | same_action)

    predict_at = jnp.where(offset == 0, prompt_len[:, None] - 1, P + j[None] - 1)  # [N,S]
    return ids, positions, mask, predict_at, block, real


def _hidden(graphdef, base, lora, ids, positions, mask, use_lora, prefix):
    """``apply_hidden`` of ids [B,T]; with a prefix, after its Q cached tokens: the prefix in
    slots 0..Q-1, seen by every query, the sequence in slots Q..Q+T-1 at positions + Q."""
    if prefix is None:
        return apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=use_lora)
    B, T = ids.shape
    Q = prefix.length
    mask = jnp.concatenate([jnp.ones((B, T, Q), bool), jnp.broadcast_to(mask, (B, T, T))], axis=2)
    hidden, _ = apply_hidden_cached(graphdef, base, lora, ids, positions + Q, mask, prefix.expand(B, Q + T), Q,
                                    use_lora=use_lora)
    return hidden


def _packed_token_logprobs(graphdef, base, lora, tokens, use_lora, S, prefix=None):
    ids, positions, mask, predict_at, block, real = _packed_layout(tokens, S)
    P = tokens.prompt_ids.shape[1]
    hidden = _hidden(graphdef, base, lora, ids, positions, mask, use_lora, prefix)  # [N,T,D]
    h = jnp.take_along_axis(hidden, predict_at[..., None], axis=1)  # [N,S,D]
    lp = _target_logprobs(graphdef, base, lora, h, ids[:, P:])
    A = tokens.action_ids.shape[1]
    onehot = jax.nn.one_hot(block, A, dtype=lp.dtype)  # padding (block A) -> zeros
    return jnp.einsum("ns,nsa->na", jnp.where(real, lp, 0.0), onehot)


def _naive_hidden(graphdef, base, lora, tokens, use_lora, prefix=None):
    """Hidden states that predict each action token, [N,A,L,D], one sequence per action."""
    prompt_ids, prompt_len, action_ids = tokens.prompt_ids, tokens.prompt_len, tokens.action_ids
    N, P = prompt_ids.shape
    _, A, L = action_ids.shape
    T = P + L
    t = jnp.arange(T)
    plen = prompt_len[:, None, None]  # [N,1,1]
    in_prompt = t[None, None, :] < plen
    prompt_part = jnp.take_along_axis(
        jnp.pad(prompt_ids, ((0, 0), (0, L)))[:, None, :], jnp.broadcast_to(t, (N, 1, T)), axis=2)
    action_index = jnp.clip(t[None, None, :] - plen, 0, L - 1)
    action_part = jnp.take_along_axis(action_ids, jnp.broadcast_to(action_index, (N, A, T)), axis=2)
    real = t[None, None, :] < plen + tokens.action_len[:, :, None]
    ids = jnp.where(in_prompt, prompt_part, jnp.where(real, action_part, 0)).reshape(N * A, T)
    real = real.reshape(N * A, T)
    mask = jnp.tril(jnp.ones((T, T), bool))[None] & real[:, None, :]
    mask = mask | jnp.eye(T, dtype=bool)[None]  # padded queries see themselves: no empty rows
    positions = jnp.broadcast_to(t, (N * A, T)).astype(jnp.int32)
    hidden = _hidden(graphdef, base, lora, ids, positions, mask, use_lora, prefix)
    hidden = hidden.reshape(N, A, T, -1)
    predict_at = jnp.clip(plen - 1 + jnp.arange(L)[None, None, :], 0, T - 1)  # [N,1,L]
    return jnp.take_along_axis(hidden, jnp.broadcast_to(predict_at, (N, A, L))[..., None], axis=2)


def _target_logprobs(graphdef, base, lora, hidden, targets):
    """log softmax(lm_head(hidden))[target], [...]: the head only where it is needed."""
    logits = apply_lm_head(graphdef, base, lora, hidden)  # [..., V] float32
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def action_logprobs(graphdef, base, lora, tokens, *, implementation: str = "packed",
                    use_lora: bool = True, action_tokens_max: int | None = None,
                    prefix: PrefixCache | None = None, count=None, level: int | tuple[int, int] | None = None):
    """Summed log-probability of each action's tokens given its prompt, [N,A] float32.

    Invalid actions (``action_mask`` False) get 0 here; ``policy_logits`` turns them to -inf.
    ``action_tokens_max`` (static; ``packed`` only) bounds the real action tokens of one
    observation; ``prefix`` is the cached head every prompt starts with (built with this
    ``use_lora``), the prompts of ``tokens`` being what follows it; see the module docstring.
    ``count`` (a traced int; ``packed`` only, without a prefix): only the first ``count`` rows
    are real, the rest padding that gets 0; they are scored in shared rows, their prompts as a
    trie (``trie_scoring``), at the static size ``level``: an index from :func:`trie_level_of`,
    which picks the smallest that holds them, None for the full size, or an exact size
    ``(rows, predicted tokens)`` (``trie_scoring.trie_size``) for a set fixed in advance.
    """
    _check_choice("scoring implementation", implementation, IMPLEMENTATIONS)
    PrefixCache.check(prefix, use_lora, "scoring")
    if implementation == "packed" and count is not None:
        if prefix is not None:
            raise ValueError("scoring: count (trie scoring) takes no prefix")
        S = _static_action_tokens_max(tokens, action_tokens_max)
        total = trie_token_logprobs(graphdef, base, lora, tokens, count, use_lora, S, level,
                                    target_logprobs=functools.partial(_target_logprobs, graphdef, base, lora))
    elif implementation == "packed":
        S = _static_action_tokens_max(tokens, action_tokens_max)
        total = _packed_token_logprobs(graphdef, base, lora, tokens, use_lora, S, prefix)
    else:
        hidden = _naive_hidden(graphdef, base, lora, tokens, use_lora, prefix)  # [N,A,L,D]
        lp = _target_logprobs(graphdef, base, lora, hidden, tokens.action_ids)  # [N,A,L]
        L = tokens.action_ids.shape[-1]
        real = jnp.arange(L)[None, None, :] < tokens.action_len[..., None]
        total = jnp.sum(jnp.where(real, lp, 0.0), axis=-1)
    return jnp.where(tokens.action_mask, total, 0.0)


def trie_level_of(tokens, count, action_tokens_max: int | None = None) -> tuple[int, jax.Array]:
    """(number of static sizes, traced index of the smallest that holds the first ``count``
    rows of ``tokens`` in shared rows): the ``level`` of ``action_logprobs(..., count=...)``."""
    S = _static_action_tokens_max(tokens, action_tokens_max)
    M, P = tokens.prompt_ids.shape
    width = default_width(P, S)
    levels = trie_levels(M, P, S, width)
    return len(levels), trie_level(trie_layout(tokens, count, S, width), levels)


def normalize_scores(logprob_sum, tokens, normalization: str = "word"):
    """Policy logits [N,A]: the summed log-prob, or divided by the action's token or word count."""
    _check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "sum":
        scores = logprob_sum
    else:
        count = tokens.action_len if normalization == "token" else tokens.action_words
        scores = logprob_sum / jnp.maximum(count, 1).astype(jnp.float32)
    return jnp.where(tokens.action_mask, scores, -jnp.inf)


def policy_logits(graphdef, base, lora, tokens, *, implementation: str = "packed",
                  normalization: str = "word", use_lora: bool = True,
                  action_tokens_max: int | None = None, prefix: PrefixCache | None = None, count=None,
                  level: int | tuple[int, int] | None = None):
    """Categorical logits of the TWOSOME policy for a batch of token tables, [N,A]."""
    lp = action_logprobs(graphdef, base, lora, tokens, implementation=implementation, use_lora=use_lora,
                         action_tokens_max=action_tokens_max, prefix=prefix, count=count, level=level)
    return normalize_scores(lp, tokens, normalization)


def critic_features(graphdef, base, lora, tokens):
    """The frozen model's hidden state at each prompt's last real token, adapters off, [N,D].

    The base never trains, so this feature is a function of the prompt alone: the rollout
    computes it once and the value updates reuse it without running the LLM again. Reading at
    ``prompt_len - 1`` (not at the last padded slot, quirk Q9 of the reference) makes it
    independent of how much right padding the batch carries.
    """
    ids, plen = tokens.prompt_ids, tokens.prompt_len
    P = ids.shape[1]
    real = jnp.arange(P)[None, :] < plen[:, None]
    mask = (jnp.tril(jnp.ones((P, P), bool))[None] & real[:, None, :]) | jnp.eye(P, dtype=bool)[None]
    hidden = apply_hidden(graphdef, base, lora, ids, None, mask, use_lora=False)
    return jnp.take_along_axis(hidden, (plen - 1)[:, None, None], axis=1)[:, 0]


def encode_texts(tokenizer, prompts, actions, *, prompt_pad: int | None = None, action_pad: int | None = None):
    """Host-side token tables (numpy :class:`~envs_jax.text.TextTokens`) for arbitrary prompt and
    action texts; action ``k`` of a prompt goes to slot ``k``, and rows with fewer actions are
    masked. The split into prompt and action tokens is the environments' own
    (:func:`envs_jax.text.action_tokens`)."""
    actions = [list(a) for a in actions]
    return encode_descriptions(tokenizer, [(p, a, range(len(a))) for p, a in zip(prompts, actions, strict=True)],
                               max(len(a) for a in actions), prompt_pad=prompt_pad, action_pad=action_pad)
