"""Action scoring: naive == packed == a plain causal run over each joined text."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from twosome_jax.model import Llama, LlamaConfig, LoRAConfig, split_model
from twosome_jax.scoring import (
    action_logprobs,
    critic_features,
    encode_texts,
    normalize_scores,
    policy_logits,
)
from twosome_jax.tokenizer import tiny_tokenizer

PROMPTS = [
    "There is a fixed cutting board in the room. You notice a tomato on the table. "
    "Currently you don't have anything in hand. To serve the dish of a bowl only containing "
    "chopped tomato, you should first",
    "Currently you are standing in front of the cutting board, carrying a bowl in hand. To serve, you should first",
]
ACTIONS = [
    ["pick up the tomato", "take the bowl", "walk to the cutting board", "serve nothing", "chop nothing"],
    ["put the tomato in the bowl", "take the bowl", "put the bowl on the cutting board", "serve the dish"],
]


@pytest.fixture(scope="module")
def setup():
    tok = tiny_tokenizer()
    model = Llama(LlamaConfig.tiny(vocab_size=len(tok)), LoRAConfig(rank=4, alpha=8.0,
                  targets=("q_proj", "v_proj", "down_proj")), rngs=nnx.Rngs(3))
    graphdef, base, lora = split_model(model)
    # nonzero B so the adapters matter
    lora = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(7), x.shape, x.dtype), lora)
    tokens = jax.tree.map(jnp.asarray, vars(encode_texts(tok, PROMPTS, ACTIONS)))
    from types import SimpleNamespace
    return tok, graphdef, base, lora, SimpleNamespace(**tokens)


def _reference(tok, graphdef, base, lora, use_lora=True):
    """Each prompt + ' ' + action as its own unpadded sequence, full-vocab log-softmax."""
    out = np.zeros((len(PROMPTS), max(map(len, ACTIONS))))
    from twosome_jax.model import apply_logits
    logits_of = jax.jit(apply_logits, static_argnums=0, static_argnames="use_lora")
    for n, (prompt, acts) in enumerate(zip(PROMPTS, ACTIONS)):
        p = tok(prompt)["input_ids"]
        for k, act in enumerate(acts):
            full = tok(prompt + " " + act)["input_ids"]
            lp = np.asarray(jax.nn.log_softmax(logits_of(graphdef, base, lora, jnp.asarray([full]), use_lora=use_lora)[0], -1))
            out[n, k] = sum(float(lp[t - 1, full[t]]) for t in range(len(p), len(full)))
    return out


@pytest.mark.parametrize("implementation", ["packed", "naive"])
def test_matches_plain_causal_runs(setup, implementation):
    tok, graphdef, base, lora, tokens = setup
    ref = _reference(tok, graphdef, base, lora)
    got = np.asarray(action_logprobs(graphdef, base, lora, tokens, implementation=implementation))
    valid = np.asarray(tokens.action_mask)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4)
    assert np.all(got[~valid] == 0)


def test_adapters_off_matches_reference(setup):
    tok, graphdef, base, lora, tokens = setup
    ref = _reference(tok, graphdef, base, lora, use_lora=False)
    got = np.asarray(action_logprobs(graphdef, base, lora, tokens, use_lora=False))
    valid = np.asarray(tokens.action_mask)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4)


def test_packed_and_naive_gradients_agree(setup):
    _, graphdef, base, lora, tokens = setup

    def loss(lora, implementation):
        logits = policy_logits(graphdef, base, lora, tokens, implementation=implementation)
        logp = jax.nn.log_softmax(logits, -1)
        return jnp.sum(jnp.where(tokens.action_mask, logp * jnp.arange(logp.shape[-1]), 0.0))

    gp = jax.grad(loss)(lora, "packed")
    gn = jax.grad(loss)(lora, "naive")
    leaves_p, leaves_n = jax.tree.leaves(gp), jax.tree.leaves(gn)
    assert leaves_p and all(float(jnp.abs(x).max()) > 0 for x in leaves_p)
    for a, b in zip(leaves_p, leaves_n):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-3)


def test_normalizations_and_invalid_actions(setup):
    _, graphdef, base, lora, tokens = setup
    lp = action_logprobs(graphdef, base, lora, tokens)
    word = normalize_scores(lp, tokens, "word")
    tokn = normalize_scores(lp, tokens, "token")
    np.testing.assert_allclose(word[0, 0], lp[0, 0] / 4, rtol=1e-6)  # "pick up the tomato": 4 words
    np.testing.assert_allclose(tokn[0, 1], lp[0, 1] / tokens.action_len[0, 1], rtol=1e-6)
    assert np.isneginf(np.asarray(word[1, 4])) and np.isneginf(np.asarray(tokn[1, 4]))
    probs = jax.nn.softmax(word, -1)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="accepted: sum, token, word"):
        normalize_scores(lp, tokens, "chars")


def test_critic_feature_ignores_right_padding(setup):
    tok, graphdef, base, lora, tokens = setup
    feats = critic_features(graphdef, base, lora, tokens)
    from twosome_jax.model import apply_hidden
    for n, prompt in enumerate(PROMPTS):
        ids = tok(prompt)["input_ids"]
        h = apply_hidden(graphdef, base, lora, jnp.asarray([ids]), use_lora=False)[0, -1]
        np.testing.assert_allclose(np.asarray(feats[n]), np.asarray(h), atol=1e-5)
    wider = encode_texts(tok, PROMPTS, ACTIONS, prompt_pad=tokens.prompt_ids.shape[1] + 16)
    from types import SimpleNamespace
    feats_wide = critic_features(graphdef, base, lora, SimpleNamespace(**jax.tree.map(jnp.asarray, vars(wider))))
    np.testing.assert_allclose(np.asarray(feats_wide), np.asarray(feats), atol=1e-5)


def test_encode_rejects_non_prefix_tokenizer():
    class Joiner:  # a tokenizer whose tokens of "ab" are not a prefix of "ab c"'s tokens
        def __call__(self, text):
            return {"input_ids": [len(text)] + [ord(c) for c in text]}
    with pytest.raises(ValueError, match="not a prefix"):
        encode_texts(Joiner(), ["ab"], [["c"]])


def _with(tokens, **fields):
    from types import SimpleNamespace
    return SimpleNamespace(**dict(vars(tokens), **fields))


def test_max_action_tokens_is_the_largest_row_total(setup):
    from twosome_jax.scoring import max_action_tokens
    _, _, _, _, tokens = setup
    totals = [sum(int(n) for n, m in zip(row, mask) if m)
              for row, mask in zip(np.asarray(tokens.action_len), np.asarray(tokens.action_mask))]
    assert max_action_tokens(tokens) == max(totals)
    assert max_action_tokens(tokens) < tokens.action_ids.shape[1] * tokens.action_ids.shape[2]


@pytest.mark.parametrize("extra", [0, 3, None])
def test_packed_under_jit_any_sufficient_bound(setup, extra):
    """Static bound exact, loose, or absent (traced: falls back to A*L): same values."""
    from twosome_jax.scoring import max_action_tokens
    tok, graphdef, base, lora, tokens = setup
    ref = _reference(tok, graphdef, base, lora)
    bound = None if extra is None else max_action_tokens(tokens) + extra
    from types import SimpleNamespace
    fn = jax.jit(lambda lora, t: action_logprobs(graphdef, base, lora, SimpleNamespace(**t),
                                                 action_tokens_max=bound))
    got = np.asarray(fn(lora, vars(tokens)))
    valid = np.asarray(tokens.action_mask)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4)


def test_packed_invalid_action_in_the_middle(setup):
    """A masked action between valid ones takes no slots and changes no other action's score."""
    _, graphdef, base, lora, tokens = setup
    full = {impl: np.asarray(action_logprobs(graphdef, base, lora, tokens, implementation=impl))
            for impl in ("packed", "naive")}
    mask = np.asarray(tokens.action_mask).copy()
    mask[0, 1] = mask[1, 2] = False
    holed = _with(tokens, action_mask=jnp.asarray(mask))
    for impl in ("packed", "naive"):
        got = np.asarray(action_logprobs(graphdef, base, lora, holed, implementation=impl))
        np.testing.assert_allclose(got[mask], full["naive"][mask], atol=1e-4)
        assert np.all(got[~mask] == 0)


def test_tight_packed_gradients_match_naive_under_jit(setup):
    from twosome_jax.scoring import max_action_tokens
    _, graphdef, base, lora, tokens = setup
    S = max_action_tokens(tokens)

    def loss(lora, implementation):
        logits = policy_logits(graphdef, base, lora, tokens, implementation=implementation,
                               action_tokens_max=S if implementation == "packed" else None)
        logp = jax.nn.log_softmax(logits, -1)
        return jnp.sum(jnp.where(tokens.action_mask, logp * jnp.arange(logp.shape[-1]), 0.0))

    gp = jax.jit(jax.grad(loss), static_argnums=1)(lora, "packed")
    gn = jax.jit(jax.grad(loss), static_argnums=1)(lora, "naive")
    for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(gn)):
        assert float(jnp.abs(a).max()) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-3)


def test_bad_bound_rejected(setup):
    _, graphdef, base, lora, tokens = setup
    with pytest.raises(ValueError, match="action_tokens_max must be positive"):
        action_logprobs(graphdef, base, lora, tokens, action_tokens_max=0)


# ------------------------------------------------------------------------ a cached shared prefix
HEAD = "You are a cook in a kitchen with a cutting board, a table and a bowl. Answer with one action.\n"
TAILS = ["The tomato is on the table. You should first",
         "Currently you are standing in front of the cutting board, carrying a bowl in hand. To serve, you should first",
         "Nothing is in hand. Next,"]
TAIL_ACTIONS = [ACTIONS[0], ACTIONS[1], ACTIONS[0][:3]]


def _split_at_prefix(tokens, Q):
    """The tables of the tokens after the first Q of every prompt (right padded as before)."""
    ids, plen = np.asarray(tokens.prompt_ids), np.asarray(tokens.prompt_len)
    return _with(tokens, prompt_ids=jnp.asarray(ids[:, Q:]), prompt_len=jnp.asarray(plen - Q))


@pytest.fixture(scope="module")
def prefixed(setup):
    """Full-prompt token tables of HEAD + each tail, the head's ids, and the tables after them."""
    tok, *_ = setup
    head = tok(HEAD)["input_ids"]
    full = jax.tree.map(jnp.asarray, vars(encode_texts(tok, [HEAD + t for t in TAILS], TAIL_ACTIONS)))
    from types import SimpleNamespace
    full = SimpleNamespace(**full)
    ids = np.asarray(full.prompt_ids)
    assert all(list(row[:len(head)]) == head for row in ids)  # the head's tokens start every prompt
    lens = np.asarray(full.prompt_len) - len(head)
    assert len(set(lens.tolist())) == len(TAILS) and lens.min() >= 1  # tails of different lengths
    return head, full, _split_at_prefix(full, len(head))


def _jitted(fn):
    """``fn(tables, *rest)`` jitted, numpy out (op by op every op of the model would compile)."""
    from types import SimpleNamespace
    run = jax.jit(lambda t, *rest: fn(SimpleNamespace(**t), *rest))
    return lambda tables, *rest: np.asarray(run(vars(tables), *rest))


@pytest.mark.parametrize("use_lora", [True, False])
@pytest.mark.parametrize("implementation", ["packed", "naive"])
def test_cached_prefix_scores_equal_full_prompts(setup, prefixed, implementation, use_lora):
    """Scoring the tails after the cached head gives the scores of the full prompts, per row of a
    batch of prompts of different lengths, adapters on and off."""
    from twosome_jax.model.generate import prefix_cache
    _, graphdef, base, lora, _ = setup
    head, full, tails = prefixed
    score = _jitted(lambda t, p: action_logprobs(graphdef, base, lora, t, implementation=implementation,
                                                 use_lora=use_lora, prefix=p))
    want = score(full, None)
    prefix = prefix_cache(graphdef, base, lora, head, use_lora=use_lora)
    got = score(tails, prefix)
    valid = np.asarray(full.action_mask)
    assert np.abs(want[valid]).min() > 0.1
    np.testing.assert_allclose(got[valid], want[valid], atol=1e-4, rtol=0)
    assert np.all(got[~valid] == 0)
    # without the prefix the tails alone score otherwise: the cached head is what is read
    alone = score(tails, None)
    assert np.abs(alone[valid] - want[valid]).max() > 1e-2


def test_cached_prefix_under_jit_one_row_at_a_time(setup, prefixed):
    """policy_logits under jit with a tight bound: the batch's rows equal each prompt scored alone
    without a prefix."""
    from twosome_jax.model.generate import prefix_cache
    from twosome_jax.scoring import max_action_tokens
    _, graphdef, base, lora, _ = setup
    head, full, tails = prefixed
    prefix = prefix_cache(graphdef, base, lora, head)
    from types import SimpleNamespace
    S = max_action_tokens(full)
    fn = jax.jit(lambda t, p: policy_logits(graphdef, base, lora, SimpleNamespace(**t), prefix=p, action_tokens_max=S))
    got = np.asarray(fn(vars(tails), prefix))
    alone = _jitted(lambda t: policy_logits(graphdef, base, lora, t))
    for n in range(len(TAILS)):
        want = alone(SimpleNamespace(**{k: v[n:n + 1] for k, v in vars(full).items()}))[0]
        valid = np.isfinite(want)
        np.testing.assert_allclose(got[n][valid], want[valid], atol=1e-4, rtol=0)
        assert np.all(np.isneginf(got[n][~valid]))


def test_cached_prefix_rejects_other_adapters_setting(setup, prefixed):
    from twosome_jax.model.generate import prefix_cache
    _, graphdef, base, lora, _ = setup
    head, _, tails = prefixed
    cases = [(prefix_cache(graphdef, base, lora, head, use_lora=False), True,
              "the prefix cache was built with use_lora=False; this scoring has use_lora=True"),
             (prefix_cache(graphdef, base, lora, head), False,
              "the prefix cache was built with use_lora=True; this scoring has use_lora=False"),
             (head, True, "prefix must be a PrefixCache")]
    for prefix, use_lora, message in cases:
        for implementation in ("packed", "naive"):
            with pytest.raises(ValueError, match=message) as e:
                policy_logits(graphdef, base, lora, tails, implementation=implementation, use_lora=use_lora,
                              prefix=prefix)
            assert "\n" not in str(e.value)
