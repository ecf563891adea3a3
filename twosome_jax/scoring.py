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
* ``packed``: one sequence per observation, ``[N, P + A*L]``: the prompt, then every action's
  block. A block mask lets action k's tokens see the prompt's real tokens and the earlier
  tokens of their own block only, and positions restart at the prompt length in every block,
  so each action sees exactly the context it would see alone. The prompt is read once.

Both evaluate the LM head only at the positions that predict an action token (the last real
prompt token, and every action token but the last), never over the whole sequence: for
SmolLM2 the head is a 49k x 576 matmul, a large share of the per-token cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from twosome_jax.model.functional import apply_hidden, apply_lm_head

IMPLEMENTATIONS = ("packed", "naive")
NORMALIZATIONS = ("sum", "token", "word")


def _check_choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")


def _packed_hidden(graphdef, base, lora, tokens, use_lora):
    """Hidden states that predict each action token, [N,A,L,D], reading each prompt once."""
    prompt_ids, prompt_len, action_ids = tokens.prompt_ids, tokens.prompt_len, tokens.action_ids
    N, P = prompt_ids.shape
    _, A, L = action_ids.shape
    T = P + A * L
    ids = jnp.concatenate([prompt_ids, action_ids.reshape(N, A * L)], axis=1)

    idx = jnp.arange(T)
    is_prompt = idx < P
    block = jnp.where(is_prompt, -1, (idx - P) // L)  # -1 for the prompt, k for action k
    offset = jnp.where(is_prompt, idx, (idx - P) % L)  # position inside prompt or block
    positions = jnp.where(is_prompt[None], idx[None], prompt_len[:, None] + offset[None]).astype(jnp.int32)

    key_is_real_prompt = is_prompt[None, :] & (idx[None, :] < prompt_len[:, None])  # [N,T]
    causal_prompt = is_prompt[:, None] & is_prompt[None, :] & (idx[None, :] <= idx[:, None])
    same_block_causal = (block[:, None] == block[None, :]) & (block[:, None] >= 0) & (
        offset[None, :] <= offset[:, None])
    # prompt queries: causal over real prompt keys; action queries: every real prompt key
    # plus their own block up to themselves.
    mask = (key_is_real_prompt[:, None, :] & (causal_prompt[None] | ~is_prompt[None, :, None])) | (
        same_block_causal[None])
    hidden = apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=use_lora)  # [N,T,D]

    last_prompt = jnp.take_along_axis(hidden, (prompt_len - 1)[:, None, None], axis=1)  # [N,1,D]
    blocks = hidden[:, P:].reshape(N, A, L, -1)
    first = jnp.broadcast_to(last_prompt[:, None], (N, A, 1, hidden.shape[-1]))
    return jnp.concatenate([first, blocks[:, :, : L - 1]], axis=2)


def _naive_hidden(graphdef, base, lora, tokens, use_lora):
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
    hidden = apply_hidden(graphdef, base, lora, ids, positions, mask, use_lora=use_lora)
    hidden = hidden.reshape(N, A, T, -1)
    predict_at = jnp.clip(plen - 1 + jnp.arange(L)[None, None, :], 0, T - 1)  # [N,1,L]
    return jnp.take_along_axis(hidden, jnp.broadcast_to(predict_at, (N, A, L))[..., None], axis=2)


def action_logprobs(graphdef, base, lora, tokens, *, implementation: str = "packed",
                    use_lora: bool = True):
    """Summed log-probability of each action's tokens given its prompt, [N,A] float32.

    Invalid actions (``action_mask`` False) get 0 here; ``policy_logits`` turns them to -inf.
    """
    _check_choice("scoring implementation", implementation, IMPLEMENTATIONS)
    hidden_fn = _packed_hidden if implementation == "packed" else _naive_hidden
    hidden = hidden_fn(graphdef, base, lora, tokens, use_lora)  # [N,A,L,D]
    logits = apply_lm_head(graphdef, base, lora, hidden)  # [N,A,L,V] float32
    logp = jax.nn.log_softmax(logits, axis=-1)
    target = jnp.take_along_axis(logp, tokens.action_ids[..., None].astype(jnp.int32), axis=-1)[..., 0]
    L = tokens.action_ids.shape[-1]
    real = jnp.arange(L)[None, None, :] < tokens.action_len[..., None]
    total = jnp.sum(jnp.where(real, target, 0.0), axis=-1)
    return jnp.where(tokens.action_mask, total, 0.0)


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
                  normalization: str = "word", use_lora: bool = True):
    """Categorical logits of the TWOSOME policy for a batch of token tables, [N,A]."""
    lp = action_logprobs(graphdef, base, lora, tokens, implementation=implementation, use_lora=use_lora)
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


def encode_texts(tokenizer, prompts, actions, *, prompt_pad: int | None = None,
                 action_pad: int | None = None, pad_multiple: int = 8):
    """Host-side token tables for arbitrary prompt/action texts (same fields as TextTokens).

    Action tokens are the tokens of ``prompt + " " + action`` beyond the prompt's own tokens;
    a tokenizer for which the prompt's tokens are not a prefix of the joined text's tokens is
    rejected, because then no split into "prompt" and "action" tokens exists.
    """
    from types import SimpleNamespace

    rows = []
    for prompt, acts in zip(prompts, actions, strict=True):
        p = tokenizer(prompt)["input_ids"]
        a = []
        for act in acts:
            full = tokenizer(prompt + " " + act)["input_ids"]
            if full[: len(p)] != p:
                raise ValueError(
                    f"the tokens of the prompt are not a prefix of the tokens of prompt + ' ' + "
                    f"action for action {act!r}; this tokenizer cannot score it")
            if len(full) == len(p):
                raise ValueError(f"action {act!r} adds no tokens to the prompt")
            a.append(full[len(p):])
        rows.append((p, a, [len(act.split()) for act in acts]))
    round_up = lambda n: -(-n // pad_multiple) * pad_multiple
    P = prompt_pad or round_up(max(len(p) for p, _, _ in rows))
    L = action_pad or round_up(max(len(t) for _, a, _ in rows for t in a))
    A = max(len(a) for _, a, _ in rows)
    N = len(rows)
    out = SimpleNamespace(
        prompt_ids=np.zeros((N, P), np.int32), prompt_len=np.zeros((N,), np.int32),
        action_ids=np.zeros((N, A, L), np.int32), action_len=np.zeros((N, A), np.int32),
        action_words=np.zeros((N, A), np.int32), action_mask=np.zeros((N, A), bool))
    for n, (p, a, w) in enumerate(rows):
        if len(p) > P or any(len(t) > L for t in a):
            raise ValueError(f"text longer than the padding ({P} prompt / {L} action tokens)")
        out.prompt_ids[n, : len(p)] = p
        out.prompt_len[n] = len(p)
        for k, t in enumerate(a):
            out.action_ids[n, k, : len(t)] = t
            out.action_len[n, k] = len(t)
            out.action_words[n, k] = w[k]
            out.action_mask[n, k] = True
    return out
