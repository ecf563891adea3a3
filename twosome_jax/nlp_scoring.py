"""Log-likelihood of every choice of every benchmark item, with the policy's scoring kernel.

Tokens follow lm-evaluation-harness's ``HFLM._encode_pair`` (``lm_eval/models/huggingface.py``):
the continuation is ``" " + choice``; trailing whitespace of the context moves to the front of
the continuation; both strings are encoded without special tokens; and a choice's tokens are
those of ``context + continuation`` beyond the length of the context's own tokens. The model
reads the context's tokens followed by the choice's tokens, as lm-eval's model does. Where that
exceeds the model's context length, the context loses tokens on the left until the longest
choice fits (lm-eval truncates each choice's sequence on its own the same way).

Items become ``envs_jax.text.TextTokens`` tables: one item is one observation, its choices the
actions. ``scoring.action_logprobs`` with ``implementation="packed"`` reads each context once
and every choice after it under the block mask, many items per call; ``"naive"`` is one
sequence per (item, choice), lm-eval's and Hugging Face's way, kept for the benchmark.

Items are bucketed by padded length, so MMLU's long professional-law prompts do not pad the
short ones: the context length and the packed choice tokens each round up to a ladder of sizes
(steps of at most 1.5x). Each bucket is one batch shape, hence one compilation, so small buckets
are merged into larger ones while that is cheaper: a bucket joins the smallest bucket at least
as long in both lengths as long as the padding this adds (its items times the extra positions)
is worth less than one compilation, ``compile_tokens`` positions (about 1k on a CPU, where a
compilation of SmolLM2 costs a few seconds, many more on an accelerator, where the positions are
cheap). A bucket's batch holds as many items as fit a token budget (a power of two, at most the
bucket's size rounded up; the bucket's longest choice sets the width of its choice table), and
its last batch is filled up with copies of its first item, whose scores are dropped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import numpy as np

from envs_jax.text import TextTokens
from twosome_jax.nlp_tasks import Item
from twosome_jax.scoring import action_logprobs

TARGET_DELIMITER = " "
DEFAULT_BATCH_TOKENS = 8192


def default_compile_tokens() -> int:
    """Token positions one compilation is worth on this backend (see the module docstring)."""
    return 1024 if jax.default_backend() == "cpu" else 65536


class EncodingError(ValueError):
    """An item whose choices cannot be tokenised after its context; the message is one line."""


@dataclass(frozen=True)
class Encoded:
    """Token ids of one item: its context, and each choice's continuation."""

    context: list[int]
    continuations: list[list[int]]


def encode_items(tokenizer, items: Sequence[Item], max_length: int) -> list[Encoded]:
    """lm-eval's context/continuation split of every item's choices (batched tokenizer calls)."""
    contexts, wholes, owners = [], [], []
    for i, item in enumerate(items):
        contexts.append(item.context.rstrip())
        for choice in item.choices:
            wholes.append(item.context + TARGET_DELIMITER + choice)
            owners.append(i)
    context_ids = tokenizer(contexts, add_special_tokens=False)["input_ids"] if contexts else []
    whole_ids = tokenizer(wholes, add_special_tokens=False)["input_ids"] if wholes else []
    conts: list[list[list[int]]] = [[] for _ in items]
    for i, ids in zip(owners, whole_ids, strict=True):
        cont = list(ids[len(context_ids[i]):])
        if not cont:
            raise EncodingError(f"a choice of item {i} adds no tokens to its context: {items[i].context[-60:]!r}")
        conts[i].append(cont)
    out = []
    for ctx, cs in zip(context_ids, conts, strict=True):
        keep = max_length + 1 - max(len(c) for c in cs)
        if keep < 1:
            raise EncodingError(f"a choice of {max(len(c) for c in cs)} tokens does not fit the model's "
                                f"{max_length}-token context")
        out.append(Encoded(list(ctx)[-keep:], cs))
    return out


def ladder(n: int, start: int) -> int:
    """The smallest size >= n in start * (1, 1.5, 2, 3, 4, 6, 8, ...): padding costs at most 1.5x."""
    size = start
    while size < n:
        doubling = size % start == 0 and (size // start) & (size // start - 1) == 0
        size = size * 3 // 2 if doubling else size * 4 // 3
    return size


@dataclass(frozen=True)
class Batch:
    """A padded batch of items: which items (``rows``, ``-1`` for filler) and its token tables."""

    rows: np.ndarray  # int [N]
    tokens: object  # envs_jax.text.TextTokens, numpy arrays
    action_tokens_max: int  # S of the packed layout


def _shape(e: Encoded) -> tuple[int, int]:
    return ladder(len(e.context), 16), ladder(sum(map(len, e.continuations)), 8)


def _merge_small_buckets(buckets: dict[tuple[int, int], list[int]], compile_tokens: int) -> None:
    """Merge buckets, cheapest first, while a merge's added padding is below ``compile_tokens``."""
    while True:
        best = None
        for (P, S), members in buckets.items():
            for (P2, S2) in buckets:
                if (P2, S2) != (P, S) and P2 >= P and S2 >= S:
                    cost = len(members) * (P2 + S2 - P - S)
                    if cost < compile_tokens and (best is None or cost < best[0]):
                        best = (cost, (P, S), (P2, S2))
        if best is None:
            return
        _, small, large = best
        buckets[large] = sorted(buckets[large] + buckets.pop(small))


def plan_batches(encoded: Sequence[Encoded], num_choices: int, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                 compile_tokens: int | None = None) -> list[Batch]:
    """Bucket the items by padded shape (merging small buckets, see the module docstring; default
    ``compile_tokens``: this backend's) and cut each bucket into equal-shape batches."""
    buckets: dict[tuple[int, int], list[int]] = {}
    for i, e in enumerate(encoded):
        buckets.setdefault(_shape(e), []).append(i)
    _merge_small_buckets(buckets, default_compile_tokens() if compile_tokens is None else compile_tokens)
    batches = []
    for (P, S), members in sorted(buckets.items()):
        L = ladder(max(len(c) for i in members for c in encoded[i].continuations), 4)
        fit = max(1, batch_tokens // (P + S))
        N = min(1 << (fit.bit_length() - 1), 1 << (len(members) - 1).bit_length())
        for start in range(0, len(members), N):
            rows = members[start:start + N]
            rows = rows + [-1] * (N - len(rows))
            prompt_ids = np.zeros((N, P), np.int32)
            prompt_len = np.zeros((N,), np.int32)
            action_ids = np.zeros((N, num_choices, L), np.int32)
            action_len = np.zeros((N, num_choices), np.int32)
            action_mask = np.zeros((N, num_choices), bool)
            for n, r in enumerate(rows):
                e = encoded[r if r >= 0 else rows[0]]  # filler: a copy of a real item, scores dropped
                prompt_ids[n, :len(e.context)] = e.context
                prompt_len[n] = len(e.context)
                for k, c in enumerate(e.continuations):
                    action_ids[n, k, :len(c)] = c
                    action_len[n, k] = len(c)
                    action_mask[n, k] = True
            tokens = TextTokens(prompt_ids=prompt_ids, prompt_len=prompt_len, action_ids=action_ids,
                                action_len=action_len, action_words=np.ones_like(action_len),
                                action_mask=action_mask)
            batches.append(Batch(np.asarray(rows), tokens, S))
    return batches


@functools.partial(jax.jit, static_argnames=("graphdef", "implementation", "use_lora", "action_tokens_max"))
def _action_logprobs(base, lora, tokens, *, graphdef, implementation, use_lora, action_tokens_max):
    return action_logprobs(graphdef, base, lora, tokens, implementation=implementation, use_lora=use_lora,
                           action_tokens_max=action_tokens_max)


def make_scorer(graphdef, base, lora, *, implementation: str = "packed", use_lora: bool = False) -> Callable:
    """``score(batch) -> [N, A]`` float64 log-likelihoods. One compilation per batch shape, shared
    by every model of the same architecture and LoRA layout in the process (a base and its
    adapted policy, say)."""

    def score(batch: Batch) -> np.ndarray:
        return np.asarray(_action_logprobs(base, lora, batch.tokens, graphdef=graphdef, implementation=implementation,
                                           use_lora=use_lora, action_tokens_max=batch.action_tokens_max), np.float64)

    return score


def score_items(score: Callable, encoded: Sequence[Encoded], num_choices: int, *,
                batch_tokens: int = DEFAULT_BATCH_TOKENS, compile_tokens: int | None = None,
                progress=None) -> list[np.ndarray]:
    """Each item's choice log-likelihoods (in item order). ``progress``: a tqdm-like bar updated
    with the number of items done."""
    out: list[np.ndarray | None] = [None] * len(encoded)
    for batch in plan_batches(encoded, num_choices, batch_tokens, compile_tokens):
        lls = score(batch)
        real = batch.rows >= 0
        for r, row in zip(batch.rows[real], lls[real]):
            out[r] = row[:len(encoded[r].continuations)]
        if progress is not None:
            progress.update(int(real.sum()))
    return out
