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

LENGTH_BUCKET = 32  # pad the prompt to a multiple of this many tokens (fewer recompiles)


class ScoreError(ValueError):
    """Scoring inputs that cannot be scored (message is one line)."""


@functools.partial(jax.jit, static_argnames=("graphdef", "use_lora"))
def _logprob_sums(graphdef, base, lora, tokens, use_lora=True):
    from twosome_jax.scoring import action_logprobs

    return action_logprobs(graphdef, base, lora, tokens, implementation="packed", use_lora=use_lora)


def score_actions(model, tokenizer, prompt: str, actions: list[str], *, use_lora: bool = True,
                  length_bucket: int = LENGTH_BUCKET) -> dict:
    """-> {"actions": [...], "policy": {...}} (the JSON body without "model"), scored by the
    policy's own kernel (``scoring.action_logprobs``, packed) on the environments' own split of
    the text into prompt and action tokens (``scoring.encode_texts``)."""
    from envs_jax.text import TextTableError, round_up, token_ids
    from twosome_jax.model.functional import split_model
    from twosome_jax.scoring import encode_texts

    for a in actions:
        if not a.split():
            raise ScoreError(f"action {a!r} is empty")
    n_prompt = len(token_ids(tokenizer, prompt))
    if n_prompt == 0:
        raise ScoreError("the prompt tokenizes to zero tokens; nothing to condition the first action token on")
    try:
        tokens = encode_texts(tokenizer, [prompt], [actions], prompt_pad=round_up(n_prompt, length_bucket))
    except TextTableError as e:
        raise ScoreError(f"{e} (try a prompt that does not end in a partial word or trailing space)") from None
    graphdef, base, lora = split_model(model)
    sums = np.asarray(_logprob_sums(graphdef, base, lora, jax.tree.map(jnp.asarray, tokens), use_lora=use_lora))[0]
    rows = []
    for k, (a, s) in enumerate(zip(actions, sums)):
        n_tok = int(tokens.action_len[0, k])
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
