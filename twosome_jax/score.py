"""Score action strings after a prompt with an LLM: the untrained (SayCan-style) policy.

    python -m twosome_jax.score --model SPEC --prompt TEXT --action A1 --action A2 ... [--json]

For each action the text ``prompt + " " + action`` is tokenized with the tokenizer's own
defaults; the action's tokens are the tokens of that text beyond the prompt's own tokens (the
prompt's tokens must be a prefix), and the score is the sum of their log-probs. Reported per
action: token count, whitespace word count, logprob sum / per token / per word, and the softmax
policy over actions under each of the three normalizations.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

LENGTH_BUCKET = 32  # pad sequence lengths to multiples of this (fewer recompiles)


class ScoreError(ValueError):
    """Scoring inputs that cannot be scored (message is one line)."""


def _bucket(n: int, step: int) -> int:
    return max(step, -(-n // step) * step)


def _batch_bucket(n: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return b


def action_token_spans(tokenizer, prompt: str, actions: list[str]):
    """-> list of (full_ids, n_prompt_tokens) for each action."""
    p_ids = list(tokenizer(prompt)["input_ids"])
    out = []
    for a in actions:
        if not a.split():
            raise ScoreError(f"action {a!r} is empty")
        ids = list(tokenizer(prompt + " " + a)["input_ids"])
        if ids[: len(p_ids)] != p_ids:
            raise ScoreError(
                f"the prompt's tokens are not a prefix of the tokens of prompt + ' ' + {a!r}; "
                "the action's tokens cannot be separated (try a prompt that does not end in a "
                "partial word or trailing space)")
        if len(ids) == len(p_ids):
            raise ScoreError(f"action {a!r} adds no tokens after the prompt")
        if len(p_ids) == 0:
            raise ScoreError("the prompt tokenizes to zero tokens; nothing to condition the first action token on")
        out.append((ids, len(p_ids)))
    return out


@functools.partial(jax.jit, static_argnames=("graphdef", "use_lora"))
def _seq_logprob_sums(graphdef, base, lora, ids, valid, target_mask, use_lora=True):
    """Sum over t of log p(ids[t] | ids[<t]) where target_mask[t]; ids/valid/target_mask [B,T]."""
    from twosome_jax.model.functional import apply_hidden, apply_lm_head
    from twosome_jax.model.llama import causal_mask

    B, T = ids.shape
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (B, T))
    hidden = apply_hidden(graphdef, base, lora, ids, positions, causal_mask(valid), use_lora=use_lora)
    logits = apply_lm_head(graphdef, base, lora, hidden[:, :-1])
    lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    tok_lp = jnp.take_along_axis(lp, ids[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(target_mask[:, 1:], tok_lp, 0.0), axis=-1)


def score_actions(model, tokenizer, prompt: str, actions: list[str], *, use_lora: bool = True,
                  length_bucket: int = LENGTH_BUCKET) -> dict:
    """-> {"actions": [...], "policy": {...}} (the JSON body without "model")."""
    from twosome_jax.model.functional import split_model

    spans = action_token_spans(tokenizer, prompt, actions)
    T = _bucket(max(len(ids) for ids, _ in spans), length_bucket)
    B = _batch_bucket(len(spans))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = np.full((B, T), pad, np.int32)
    valid = np.zeros((B, T), bool)
    target = np.zeros((B, T), bool)
    for i, (seq, n_p) in enumerate(spans):
        ids[i, : len(seq)] = seq
        valid[i, : len(seq)] = True
        target[i, n_p: len(seq)] = True
    graphdef, base, lora = split_model(model)
    sums = np.asarray(_seq_logprob_sums(graphdef, base, lora, jnp.asarray(ids), jnp.asarray(valid),
                                        jnp.asarray(target), use_lora=use_lora))[: len(spans)]
    rows = []
    for a, (seq, n_p), s in zip(actions, spans, sums):
        n_tok = len(seq) - n_p
        n_words = len(a.split())
        rows.append({"action": a, "tokens": n_tok, "words": n_words, "logprob_sum": float(s),
                     "logprob_token": float(s) / n_tok, "logprob_word": float(s) / n_words})
    policy = {}
    for key, field in (("sum", "logprob_sum"), ("token", "logprob_token"), ("word", "logprob_word")):
        x = np.asarray([r[field] for r in rows], np.float64)
        e = np.exp(x - x.max())
        policy[key] = (e / e.sum()).tolist()
    return {"actions": rows, "policy": policy}


def format_table(result: dict, prompt: str) -> str:
    rows = result["actions"]
    pol = result["policy"]
    w = max(6, *(len(r["action"]) for r in rows))
    head = (f"{'action':<{w}}  {'tokens':>6} {'words':>5}  {'lp_sum':>9} {'lp_token':>9} {'lp_word':>9}"
            f"  {'pi_sum':>7} {'pi_token':>8} {'pi_word':>7}")
    lines = [f"model:  {result['model']}", f"prompt: {prompt!r}", "", head, "-" * len(head)]
    for i, r in enumerate(rows):
        lines.append(
            f"{r['action']:<{w}}  {r['tokens']:>6d} {r['words']:>5d}  {r['logprob_sum']:>9.4f} "
            f"{r['logprob_token']:>9.4f} {r['logprob_word']:>9.4f}  {pol['sum'][i]:>7.4f} "
            f"{pol['token'][i]:>8.4f} {pol['word'][i]:>7.4f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m twosome_jax.score",
        description="Joint log-probability of each action after a prompt, and the softmax policy "
                    "under sum / per-token / per-word normalization.")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="smollm2-135m-instruct (default), tiny-random, a Hugging Face checkpoint "
                        "directory, or a llama .gguf file")
    p.add_argument("--prompt", required=True, help="the prompt text")
    p.add_argument("--action", action="append", required=True,
                   help="an action string (repeat for each action)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="compute/weight dtype (default: float32 on CPU, bfloat16 on accelerators)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from twosome_jax.model import ModelLoadError, load_model

    try:
        _, model, tokenizer = load_model(args.model, dtype=args.dtype)
        result = score_actions(model, tokenizer, args.prompt, args.action)
    except (ModelLoadError, ScoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"model": args.model, **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result, args.prompt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
