"""Compiled text: the token tables an LLM agent reads an environment's observations through.

Every environment describes an observation on the host, exactly (``env.describe(obs)``: the
prompt, the offered action strings and their env action indices), and compiles that
description for one tokenizer into a table whose ``tokenize(obs)`` is pure and jittable, so
that the training program turns observations into token ids with no host round-trip.

The contract between an environment's table and the scoring kernel is :class:`TextTokens`.
Action slot ``k`` always holds env action ``k``; ``action_mask[k]`` says whether the state
offers it. The policy's sampled index is therefore the env action itself (the reference
stores the env index too), and the order in which a prompt lists its actions plays no part
in scoring: each action is scored after the prompt alone.

An action's tokens are the tokens of ``prompt + " " + action`` beyond the prompt's own tokens
(the reference's joining rule, :func:`action_tokens`). A tokenizer for which the prompt's
tokens are not a prefix of the joined text's tokens cannot split them and is rejected.

:class:`EnumeratedText` compiles any environment whose reachable observations can be
enumerated: it tokenizes the description of each one on the host and looks rows up in the
graph. It is exact by construction; an observation outside the table offers no action, so its
policy is NaN and the gap shows at once.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class TextTableError(ValueError):
    """A tokenizer breaks an assumption of the compiled text, or the tables disagree with it."""


@struct.dataclass
class TextTokens:
    """Token ids of a batch of prompts and of every env action after them (right padded, 0)."""

    prompt_ids: jax.Array  # int32[N, P]
    prompt_len: jax.Array  # int32[N]
    action_ids: jax.Array  # int32[N, A, L] tokens of " " + action after the prompt
    action_len: jax.Array  # int32[N, A]
    action_words: jax.Array  # int32[N, A] whitespace word count of the action string
    action_mask: jax.Array  # bool[N, A] the state offers action k


def token_ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def action_tokens(tokenizer: Any, prompt: str, action: str, prompt_ids: Sequence[int] | None = None) -> list[int]:
    """The tokens ``action`` adds after ``prompt``: ``tok(prompt + " " + action)[len(tok(prompt)):]``.

    Raises :class:`TextTableError` when the prompt's tokens are not a prefix of the joined
    text's (no split into prompt and action tokens exists) or the action adds no token."""
    prompt_ids = token_ids(tokenizer, prompt) if prompt_ids is None else list(prompt_ids)
    full = token_ids(tokenizer, prompt + " " + action)
    if full[: len(prompt_ids)] != prompt_ids:
        raise TextTableError(f"the tokens of the prompt are not a prefix of the tokens of prompt + ' ' + "
                             f"{action!r}; this tokenizer cannot split them (prompt {prompt!r})")
    if len(full) == len(prompt_ids):
        raise TextTableError(f"action {action!r} adds no tokens to the prompt")
    return full[len(prompt_ids):]


def round_up(n: int, multiple: int = 8) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def max_action_tokens(tokens: TextTokens) -> int:
    """Host-side: the largest total of real action tokens of one observation in ``tokens``
    (the static length of the packed action region, see ``twosome_jax.scoring``)."""
    alen = np.where(np.asarray(tokens.action_mask), np.asarray(tokens.action_len), 0)
    return int(alen.sum(-1).max()) if alen.size else 0


def encode_descriptions(tokenizer: Any, descriptions: Sequence[tuple[str, Sequence[str], Sequence[int]]],
                        num_actions: int, *, prompt_pad: int | None = None,
                        action_pad: int | None = None) -> TextTokens:
    """Host-side :class:`TextTokens` (numpy) for ``(prompt, actions, action_ids)`` triples.

    ``actions[i]`` is written into slot ``action_ids[i]`` (< ``num_actions``); slots not
    offered stay masked."""
    rows = []
    for prompt, actions, ids in descriptions:
        p = token_ids(tokenizer, prompt)
        a = {int(k): (action_tokens(tokenizer, prompt, s, p), len(s.split())) for s, k in zip(actions, ids, strict=True)}
        if any(not 0 <= k < num_actions for k in a):
            raise TextTableError(f"action ids {list(ids)} outside 0..{num_actions - 1}")
        rows.append((p, a))
    P = prompt_pad or round_up(max(len(p) for p, _ in rows))
    L = action_pad or round_up(max((len(t) for _, a in rows for t, _ in a.values()), default=1))
    N = len(rows)
    out = TextTokens(
        prompt_ids=np.zeros((N, P), np.int32), prompt_len=np.zeros((N,), np.int32),
        action_ids=np.zeros((N, num_actions, L), np.int32), action_len=np.zeros((N, num_actions), np.int32),
        action_words=np.zeros((N, num_actions), np.int32), action_mask=np.zeros((N, num_actions), bool))
    for n, (p, a) in enumerate(rows):
        if len(p) > P or any(len(t) > L for t, _ in a.values()):
            raise TextTableError(f"text longer than the padding ({P} prompt / {L} action tokens)")
        out.prompt_ids[n, : len(p)] = p
        out.prompt_len[n] = len(p)
        for k, (t, words) in a.items():
            out.action_ids[n, k, : len(t)] = t
            out.action_len[n, k] = len(t)
            out.action_words[n, k] = words
            out.action_mask[n, k] = True
    return out


def verify_text_table(table: Any, describe: Callable, tokenizer: Any, observations: np.ndarray,
                      batch: int = 1024) -> int:
    """Check ``table.tokenize`` against ``tokenizer`` on the description of every observation;
    raises :class:`TextTableError` at the first difference, returns how many were checked."""
    observations = np.asarray(observations, np.int32)
    tokenize = jax.jit(lambda t, o: t.tokenize(o))
    for j in range(0, len(observations), batch):
        chunk = observations[j:j + batch]
        got = jax.tree.map(np.asarray, tokenize(table, jnp.asarray(chunk)))
        for i, obs in enumerate(chunk):
            prompt, actions, ids = describe(obs)
            want = token_ids(tokenizer, prompt)
            if got.prompt_ids[i, : got.prompt_len[i]].tolist() != want or got.prompt_len[i] != len(want):
                raise TextTableError(f"compiled prompt tokens differ from the tokenizer for obs {obs.tolist()} "
                                     f"({prompt!r}): {got.prompt_ids[i, : got.prompt_len[i]].tolist()} != {want}")
            if sorted(np.flatnonzero(got.action_mask[i]).tolist()) != sorted(int(k) for k in ids):
                raise TextTableError(f"compiled offered actions {np.flatnonzero(got.action_mask[i]).tolist()} "
                                     f"differ from {list(ids)} for obs {obs.tolist()}")
            for s, k in zip(actions, ids):
                want_a = action_tokens(tokenizer, prompt, s, want)
                got_a = got.action_ids[i, k, : got.action_len[i, k]].tolist()
                if got_a != want_a or got.action_words[i, k] != len(s.split()):
                    raise TextTableError(f"compiled action tokens differ for {s!r} after {prompt!r}: "
                                         f"{got_a} != {want_a}")
    return len(observations)


@struct.dataclass
class EnumeratedText:
    """The text of every reachable observation, tokenized on the host, looked up in the graph."""

    obs: jax.Array  # int32[R, D]
    tokens: TextTokens  # [R, ...]
    action_tokens_max: int = struct.field(pytree_node=False)

    @classmethod
    def build(cls, observations: np.ndarray, describe: Callable, num_actions: int, tokenizer: Any,
              verify: bool = True) -> "EnumeratedText":
        """``describe(obs) -> (prompt, actions, action_ids)`` for each row of ``observations``."""
        observations = np.unique(np.asarray(observations, np.int32), axis=0)
        tokens = encode_descriptions(tokenizer, [describe(o) for o in observations], num_actions)
        table = cls(obs=jnp.asarray(observations), tokens=jax.tree.map(jnp.asarray, tokens),
                    action_tokens_max=max(max_action_tokens(tokens), 1))
        if verify:
            verify_text_table(table, describe, tokenizer, observations)
        return table

    @property
    def prompt_len_max(self) -> int:
        return self.tokens.prompt_ids.shape[-1]

    @property
    def num_actions(self) -> int:
        return self.tokens.action_mask.shape[-1]

    def tokenize(self, obs: jax.Array) -> TextTokens:
        """Pure, jittable: int obs [N, D] (or [D]) -> :class:`TextTokens` ([N, ...])."""
        obs = jnp.asarray(obs).astype(jnp.int32)
        single = obs.ndim == 1
        obs = obs[None] if single else obs
        match = jnp.all(obs[:, None, :] == self.obs[None, :, :], axis=-1)  # [N, R]
        row = jnp.argmax(match, axis=-1)
        found = jnp.any(match, axis=-1)
        out = jax.tree.map(lambda x: x[row], self.tokens)
        out = out.replace(action_mask=out.action_mask & found[:, None])
        return jax.tree.map(lambda x: x[0], out) if single else out
