"""Scoring a variable number of observations at once, their prompts shared as a trie.

The policy update scores each group's distinct observations (``ppo.grad_over_distinct``):
about 21 of a group's 32 in lettuce-tomato salad, a number known only inside the compiled
update. ``scoring``'s ``packed`` layout gives each one a row of ``P + S`` slots, so every row
pays for the longest prompt and the longest action run, and the prompts' common stretches of
text are read once per observation. Here the observations share rows instead:

* The ``count`` valid rows are sorted by their prompt tokens. A prompt's longest common prefix
  with any earlier prompt is then its common prefix with the one just before it (``lcp``).
* In that order each observation is placed in a row of ``width`` slots: if it fits, after the
  previous one, adding only its prompt tokens beyond the ``lcp`` (the shared ones are the
  previous observation's slots), then the real tokens of its actions back to back, as in
  ``packed``; if not, at the start of a new row with its whole prompt.
* A slot's position is its depth: the token's index in its prompt, or ``prompt_len + offset``
  in an action. A slot attends to its own path only: the prompt slots on its observation's path
  (``slot_of[obs, depth]``) up to its depth and, in an action, the earlier tokens of that action.
  So every token sees the same tokens at the same positions as in its own sequence, and the
  scores are ``packed``'s (tests/test_trie_scoring.py, logits and gradients).
* The model runs on a static number of rows, and the LM head on a static number of predicted
  tokens (the real ones first): one of a few ``levels`` up to the capacity, the smallest that
  holds the group (:func:`trie_level`). The policy update takes each level's gradient in its own
  ``lax.switch`` branch (``ppo.grad_over_distinct``), so only the chosen level's activations
  are held and the cost follows the group's real tokens.

A set fixed before compiling, an environment's reachable observations, is laid out on the host
instead (:func:`trie_size`) and scored at exactly its size: the rollout's and the evaluation's
table of logits (``LLMAgent.table_logits``) and, with the actions left out, the critic-feature
cache (:func:`trie_prompt_hidden`, the hidden state at each prompt's last token).

The capacity is static and always enough: a row of ``width >= P + S`` slots holds at least
``width // (P + S)`` observations even with no sharing.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from twosome_jax.model.functional import apply_hidden


def default_width(P: int, S: int) -> int:
    """Row width: twice the longest observation (prompt + action run), in multiples of 128."""
    return 128 * math.ceil(2 * (P + S) / 128)


def _sorted_prompts(tokens, count):
    """Order of the rows (valid ones first, by prompt tokens) and each sorted prompt's common
    prefix length with the one before it."""
    pid, plen = tokens.prompt_ids, tokens.prompt_len
    M, P = pid.shape
    d = jnp.arange(P)
    keyed = jnp.where(d[None] < plen[:, None], pid, -1)  # a prefix sorts before its extensions
    invalid = (jnp.arange(M) >= count).astype(keyed.dtype)
    order = jnp.lexsort(jnp.concatenate([keyed[:, ::-1].T, invalid[None]], axis=0))
    sk, sl = keyed[order], plen[order]
    both = d[None] < jnp.minimum(sl[1:], sl[:-1])[:, None]
    same = jnp.cumprod((sk[1:] == sk[:-1]) & both, axis=1)
    lcp = jnp.concatenate([jnp.zeros((1,), jnp.int32), same.sum(axis=1).astype(jnp.int32)])
    return order, lcp


def action_slots(tokens, S):
    """Tight packing of each row's actions back to back in S slots (``scoring``'s ``packed``
    and the shared rows here): per slot its action id (A: padding), its offset in the action,
    whether it is real, and its token (0 where not real); and each row's real action tokens."""
    action_ids = tokens.action_ids
    N, A, L = action_ids.shape
    alen = jnp.where(tokens.action_mask, tokens.action_len, 0).astype(jnp.int32)
    end = jnp.cumsum(alen, axis=1)
    start = end - alen
    j = jnp.arange(S, dtype=jnp.int32)
    block = jnp.sum(j[None, :, None] >= end[:, None, :], axis=-1).astype(jnp.int32)
    real = block < A
    block_c = jnp.minimum(block, A - 1)
    offset = jnp.where(real, j[None] - jnp.take_along_axis(start, block_c, axis=1), 0)
    flat = block_c * L + jnp.clip(offset, 0, L - 1)
    act = jnp.where(real, jnp.take_along_axis(action_ids.reshape(N, A * L), flat, axis=1), 0)
    return block, offset, real, act.astype(jnp.int32), end[:, -1]


def capacity_rows(M: int, P: int, S: int, width: int) -> int:
    """Rows that always hold ``M`` observations of at most ``P + S`` slots each."""
    if width < P + S:
        raise ValueError(f"trie scoring: width {width} is shorter than one observation ({P} + {S} slots)")
    return -(-M // (width // (P + S)))


LEVEL_EIGHTHS = (1, 2, 3, 4, 6, 8)


def trie_levels(M: int, P: int, S: int, width: int) -> tuple[tuple[int, int], ...]:
    """The static sizes (rows, predicted tokens) at which ``M`` observations may be scored: an
    eighth, a quarter, three eighths, a half, three quarters and all of the capacity in rows,
    each with twice that share of the ``M * S`` predicted-token slots (at most all of them). A
    row's real action tokens fill more of it than the capacity's share (the longest prompt
    and action run seldom meet), so a level's rows, not its head, decide which level a group
    needs."""
    rows, entries = capacity_rows(M, P, S, width), M * S
    return tuple(sorted({(-(-rows * j // 8), min(entries, -(-entries * 2 * j // 8))) for j in LEVEL_EIGHTHS}))


def trie_layout(tokens, count, S: int, width: int):
    """The shared-row layout of the first ``count`` rows of ``tokens`` (sorted order).

    Returns a dict of arrays: per slot (``capacity`` of them) ``ids``, ``positions``,
    ``owner`` (sorted row, -1 for an empty slot), ``seg`` (-1 prompt, action id, -2 empty);
    per sorted row ``slot_of`` [M, P] (the slot of each prompt token on its path, -1 past the
    prompt); per (sorted row, action slot j) ``predict`` (the slot whose hidden state predicts
    it), ``target``, ``block``, ``real``; ``order`` (sorted row -> row) and ``rows`` in use."""
    pid, plen = tokens.prompt_ids, tokens.prompt_len.astype(jnp.int32)
    M, P = pid.shape
    capacity = capacity_rows(M, P, S, width) * width
    order, lcp = _sorted_prompts(tokens, count)
    block, offset, real, act, atotal = action_slots(jax.tree.map(lambda x: x[order], tokens), S)
    sp, sl = pid[order], plen[order]
    valid = jnp.arange(M) < count
    d = jnp.arange(P, dtype=jnp.int32)

    def place(carry, x):
        row, fill, prev = carry
        ln, common, at, ok = x
        fits = fill + ln - common + at <= width
        shared = jnp.where(fits, common, 0)
        begin = jnp.where(fits, fill, 0)
        new_row = row + jnp.where(fits, 0, 1)
        first = new_row * width + begin
        slots = jnp.where(d < shared, prev, first + d - shared)
        slots = jnp.where((d < ln) & ok, slots, -1)
        carry = (jnp.where(ok, new_row, row), jnp.where(ok, begin + ln - shared + at, fill),
                 jnp.where(ok, slots, prev))
        return carry, (slots, first + ln - shared, shared)

    init = (jnp.int32(-1), jnp.int32(width), jnp.full((P,), -1, jnp.int32))
    (last_row, _, _), (slot_of, action_start, shared) = jax.lax.scan(place, init, (sl, lcp, atotal, valid))

    new_prompt = (d[None] >= shared[:, None]) & (slot_of >= 0)
    pslot = jnp.where(new_prompt, slot_of, capacity)  # capacity: dropped
    j = jnp.arange(S, dtype=jnp.int32)
    aslot = jnp.where(real & valid[:, None], action_start[:, None] + j[None], capacity)
    owner_rows = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32)[:, None], (M, P))
    owner_act = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32)[:, None], (M, S))

    def scatter(fill_value, prompt_values, action_values):
        out = jnp.full((capacity,), fill_value, jnp.int32)
        out = out.at[pslot.reshape(-1)].set(prompt_values.reshape(-1), mode="drop")
        return out.at[aslot.reshape(-1)].set(action_values.reshape(-1), mode="drop")

    last = jnp.take_along_axis(slot_of, jnp.maximum(sl - 1, 0)[:, None], axis=1)  # [M,1]
    return dict(
        ids=scatter(0, sp, act),
        positions=scatter(0, jnp.broadcast_to(d, (M, P)), sl[:, None] + offset),
        owner=scatter(-1, owner_rows, owner_act),
        seg=scatter(-2, jnp.full((M, P), -1, jnp.int32), block),
        slot_of=slot_of,
        predict=jnp.where(offset == 0, last, action_start[:, None] + j[None] - 1),
        target=act, block=block, real=real & valid[:, None], order=order,
        rows=jnp.where(count > 0, last_row + 1, 0), n_real=(real & valid[:, None]).sum())


def trie_size(tokens, S: int, width: int | None = None) -> tuple[int, int]:
    """(rows, predicted tokens) that hold every row of the concrete ``tokens`` in shared rows:
    the exact static size, computed on the host, of a set of observations fixed before
    compiling (an environment's reachable observations), for ``trie_token_logprobs``."""
    M, P = tokens.prompt_ids.shape
    layout = trie_layout(tokens, M, S, default_width(P, S) if width is None else width)
    return int(layout["rows"]), max(int(layout["n_real"]), 1)


def _prompts_only(tokens):
    """``tokens`` with no action offered: a layout of the prompts alone (the critic's input)."""
    return tokens.replace(action_mask=jnp.zeros_like(tokens.action_mask))


def prompt_rows(tokens) -> int:
    """Rows of ``default_width(P, 0)`` slots that hold the concrete ``tokens``' prompts alone in
    shared rows: the static ``rows`` of :func:`trie_prompt_hidden`, computed on the host."""
    return trie_size(_prompts_only(tokens), 1, default_width(tokens.prompt_ids.shape[1], 0))[0]


def trie_prompt_hidden(graphdef, base, lora, tokens, use_lora: bool, rows: int):
    """The hidden state at each prompt's last token, [M, D], every row of ``tokens`` with its
    prompt alone in shared rows (its common prefix with the previous sorted prompt read once):
    what ``scoring.critic_features`` computes one row each. ``rows`` (static) holds them
    (:func:`prompt_rows`)."""
    M, P = tokens.prompt_ids.shape
    width = default_width(P, 0)
    lay = trie_layout(_prompts_only(tokens), M, 1, width)
    ids, positions, mask = _row_inputs(lay, rows, width)
    hidden = apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=use_lora)
    last = jnp.take_along_axis(lay["slot_of"], jnp.maximum(tokens.prompt_len[lay["order"]] - 1, 0)[:, None], axis=1)
    return hidden.reshape(rows * width, -1)[last[:, 0]][jnp.argsort(lay["order"])]


def trie_level(layout, levels) -> jax.Array:
    """Index of the smallest level that holds the layout's rows and predicted tokens."""
    rows = jnp.asarray([r for r, _ in levels])
    entries = jnp.asarray([e for _, e in levels])
    fits = (rows >= layout["rows"]) & (entries >= layout["n_real"])
    return jnp.argmax(fits)  # the last level always fits


def _row_inputs(layout, R: int, width: int):
    """Token ids, positions [R, W] and the attention mask [R, W, W] of the first R rows."""
    take = lambda name: layout[name][: R * width].reshape(R, width)
    owner, seg, pos = take("owner"), take("seg"), take("positions")
    slot = jnp.arange(R * width, dtype=jnp.int32).reshape(R, width)
    slot_of = layout["slot_of"]
    on_path = slot_of[jnp.maximum(owner, 0)[:, :, None], jnp.minimum(pos, slot_of.shape[1] - 1)[:, None, :]]
    earlier = pos[:, None, :] <= pos[:, :, None]  # [R, query, key]
    prompt_key = (seg[:, None, :] == -1) & (on_path == slot[:, None, :]) & (owner[:, :, None] >= 0)
    same_action = ((seg[:, None, :] >= 0) & (seg[:, None, :] == seg[:, :, None])
                   & (owner[:, None, :] == owner[:, :, None]))
    itself = jnp.eye(width, dtype=bool)[None]  # an empty slot sees itself: no empty softmax
    return take("ids"), pos, (earlier & (prompt_key | same_action)) | itself


def trie_token_logprobs(graphdef, base, lora, tokens, count, use_lora: bool, S: int, level, *,
                        target_logprobs, width: int | None = None):
    """Summed log-probability of each action's tokens, [M, A], for the first ``count`` rows of
    ``tokens`` (rows past ``count`` get 0), at ``level`` (static): an index into
    :func:`trie_levels` that holds the layout (:func:`trie_level`), None for the full capacity,
    or a size ``(rows, predicted tokens)`` of its own (:func:`trie_size`). ``target_logprobs(hidden,
    targets)`` is the LM head's log-probability of each target (``scoring``'s)."""
    M, P = tokens.prompt_ids.shape
    A = tokens.action_ids.shape[1]
    width = default_width(P, S) if width is None else width
    R, E = level if isinstance(level, tuple) else trie_levels(M, P, S, width)[-1 if level is None else level]
    lay = trie_layout(tokens, count, S, width)
    ids, positions, mask = _row_inputs(lay, R, width)
    hidden = apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=use_lora)
    hidden = hidden.reshape(R * width, -1)
    real = lay["real"].reshape(-1)
    entries = jnp.argsort(~real, stable=True)[:E]  # the real predicted tokens first
    predict = jnp.minimum(lay["predict"].reshape(-1)[entries], R * width - 1)
    lp = target_logprobs(hidden[predict], lay["target"].reshape(-1)[entries])
    lp_flat = jnp.zeros(real.shape, jnp.float32).at[entries].set(lp)
    lp_flat = jnp.where(real, lp_flat, 0.0).reshape(M, S)
    onehot = jax.nn.one_hot(lay["block"], A, dtype=lp_flat.dtype)
    per_action = jnp.einsum("ns,nsa->na", lp_flat, onehot)  # sorted rows
    return per_action[jnp.argsort(lay["order"])]
