"""Generation against transformers' ``generate``: greedy token for token (tiny model with PEFT
adapters, and SmolLM2), EOS stopping and padding, and sampling against transformers' own
temperature and top-p warpers."""

from __future__ import annotations

import contextlib

import jax
import numpy as np
from conftest import randomize_model
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from twosome_jax.model import ALL_TARGETS, LoRAConfig, LoRAParam, hf_state_dict, load_model, save_hf_checkpoint, split_model  # noqa: E402
from twosome_jax.model.generate import generate, pad_prompts  # noqa: E402

TEXTS = ["The cook walks to the kitchen and picks up the knife.", "Take the plate,",
         "What should you do first? You should", "A"]
NEW = 12
WIDTH = 20  # prompt width of the tiny batches: padding past the longest prompt too, one compile


def _perturb(model, seed):
    """Clearly nonzero random base weights and adapters, so that greedy choices are decisive
    (the default init gives near-uniform logits) and the adapters change them."""
    randomize_model(model, seed)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Our tiny model with adapters on every projection, and the same model in transformers + PEFT."""
    peft = pytest.importorskip("peft")
    from twosome_jax.export import export_peft_adapter

    lcfg = LoRAConfig(rank=4, alpha=12.0, targets=ALL_TARGETS)
    config, model, tok = load_model("tiny-random", dtype="float32", lora=lcfg)
    _perturb(model, seed=3)
    root = tmp_path_factory.mktemp("generate")
    save_hf_checkpoint(model, root / "base", tok)
    export_peft_adapter(nnx.state(model, LoRAParam), config, lcfg, root / "adapter", str(root / "base"))
    ref = transformers.LlamaForCausalLM.from_pretrained(root / "base", dtype=torch.float32).eval()
    ref = peft.PeftModel.from_pretrained(ref, root / "adapter").eval()
    return config, split_model(model), tok, ref


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread: its OpenMP threads spin-wait, and on cores shared with other jobs
    that makes its small decode-step matmuls ~10x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hf_greedy(ref, prompt, new, eos_id, pad_id):
    """transformers' greedy continuation of one unpadded prompt (its new tokens only)."""
    with torch.no_grad(), one_torch_thread():
        out = ref.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                           max_new_tokens=new, do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
    return out[0, len(prompt):].tolist()


def assert_same_as_hf(out, refs, new, pad_id):
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    assert tokens.shape == (len(refs), new)
    for row, n, want in zip(tokens, lengths, refs):
        assert row[:n].tolist() == want
        assert (row[n:] == pad_id).all()


def test_greedy_matches_transformers_with_and_without_lora(tiny):
    config, (graphdef, base, lora), tok, ref = tiny
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    assert len({len(p) for p in prompts}) == len(prompts)  # a padded batch
    ids, lens = pad_prompts(prompts, tok.pad_token_id, WIDTH)
    eos, pad = config.eos_token_id, tok.pad_token_id
    want = [hf_greedy(ref, p, NEW, eos, pad) for p in prompts]
    with ref.disable_adapter():
        want_base = [hf_greedy(ref, p, NEW, eos, pad) for p in prompts]
    assert want != want_base  # the adapters change the continuations
    assert len({tuple(w) for w in want}) == len(want)  # and the rows differ from each other

    out = generate(graphdef, base, lora, ids, lens, max_new_tokens=NEW, eos_id=eos, pad_id=pad)
    assert_same_as_hf(out, want, NEW, pad)
    out = generate(graphdef, base, lora, ids, lens, max_new_tokens=NEW, eos_id=eos, pad_id=pad, use_lora=False)
    assert_same_as_hf(out, want_base, NEW, pad)


def test_eos_stops_and_pads_like_transformers(tiny):
    config, (graphdef, base, lora), tok, ref = tiny
    prompts = [tok(t)["input_ids"] for t in TEXTS]
    ids, lens = pad_prompts(prompts, tok.pad_token_id, WIDTH)
    pad = tok.pad_token_id
    eos = hf_greedy(ref, prompts[0], NEW, config.eos_token_id, pad)[4]  # rows now stop at different steps
    want = [hf_greedy(ref, p, NEW, eos, pad) for p in prompts]
    stops = [len(w) for w in want]
    assert min(stops) < NEW and len(set(stops)) > 1, stops
    out = generate(graphdef, base, lora, ids, lens, max_new_tokens=NEW, eos_id=eos, pad_id=pad)
    assert_same_as_hf(out, want, NEW, pad)
    for row, n in zip(np.asarray(out.tokens), np.asarray(out.lengths)):
        if n < NEW:
            assert row[n - 1] == eos and eos not in row[:n - 1]  # it stopped at its first EOS


def test_sampling_follows_transformers_warpers(tiny):
    """Empirical first-token frequencies over 16384 draws equal transformers' temperature + top-p
    distribution on torch's logits, within sampling noise, and never leave its nucleus."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    config, (graphdef, base, lora), tok, ref = tiny
    prompt = tok(TEXTS[2])["input_ids"]
    temperature, top_p, draws = 0.3, 0.8, 16384
    with torch.no_grad():
        logits = ref(input_ids=torch.tensor([prompt])).logits[:, -1].float()
        warped = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits))
        p_ref = torch.softmax(warped, -1)[0].numpy()
    ids, lens = pad_prompts([prompt] * draws, tok.pad_token_id)
    out = generate(graphdef, base, lora, ids, lens, max_new_tokens=1, temperature=temperature, top_p=top_p,
                   key=jax.random.key(0))
    freq = np.bincount(np.asarray(out.tokens[:, 0]), minlength=config.vocab_size) / draws
    nucleus = p_ref > 0
    assert 5 <= nucleus.sum() < 0.5 * config.vocab_size  # a spread distribution, cut by top-p
    assert freq[~nucleus].sum() == 0
    tv = 0.5 * np.abs(freq - p_ref).sum()
    print(f"sampling: {nucleus.sum()} tokens in the nucleus, total variation {tv:.4f} over {draws} draws")
    assert tv < 0.04


def test_sampling_is_reproducible_and_tiny_top_p_is_greedy(tiny):
    config, (graphdef, base, lora), tok, ref = tiny
    ids, lens = pad_prompts([tok(t)["input_ids"] for t in TEXTS], tok.pad_token_id, WIDTH)
    sample = lambda key, **kw: np.asarray(generate(graphdef, base, lora, ids, lens, max_new_tokens=NEW,
                                                   eos_id=config.eos_token_id, key=key, **kw).tokens)
    a = sample(jax.random.key(1), temperature=1.5)
    assert np.array_equal(a, sample(jax.random.key(1), temperature=1.5))
    assert not np.array_equal(a, sample(jax.random.key(2), temperature=1.5))
    greedy = sample(None)
    assert not np.array_equal(a, greedy)
    assert np.array_equal(sample(jax.random.key(1), temperature=1.5, top_p=1e-6), greedy)


@pytest.mark.smollm2
def test_smollm2_greedy_matches_transformers(smollm2_gguf):
    """SmolLM2-135M-Instruct (float32): two chat prompts of different lengths, 16 new tokens each,
    ours batched and right-padded against transformers one prompt at a time on the same weights."""
    from twosome_jax.chat import render_chat

    config, model, tok = load_model(smollm2_gguf, dtype="float32")
    with one_torch_thread():
        ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config.to_hf_dict())).eval()
        missing, unexpected = ref.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in hf_state_dict(model).items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embedding
    questions = ["What is the capital of France?", "Name three things you can cook with a tomato and an onion."]
    prompts = [tok(render_chat([{"role": "user", "content": q}]))["input_ids"] for q in questions]
    eos, pad = config.eos_token_id, tok.pad_token_id
    want = [hf_greedy(ref, p, 16, eos, pad) for p in prompts]
    graphdef, base, lora = split_model(model)
    out = generate(graphdef, base, lora, *pad_prompts(prompts, pad), max_new_tokens=16, eos_id=eos, pad_id=pad)
    assert_same_as_hf(out, want, 16, pad)
    print("SmolLM2 greedy:", [tok.decode(w) for w in want])


@pytest.fixture(scope="module")
def tiny_lora():
    """The tiny model with random base weights and adapters, no torch reference (prefix tests)."""
    lcfg = LoRAConfig(rank=4, alpha=12.0, targets=ALL_TARGETS)
    config, model, tok = load_model("tiny-random", dtype="float32", lora=lcfg)
    _perturb(model, seed=5)
    return config, split_model(model), tok


PREFIX = "There is a fixed table in the room. You notice a cup on the table."
SUFFIXES = [" The cook walks to the kitchen and picks up the knife.", " Take the plate,",
            " What should you do first? You should", " A"]


def _prefixed(tok):
    """The prefix's ids and what each full prompt adds after them (checked to split cleanly)."""
    head = tok(PREFIX)["input_ids"]
    full = [tok(PREFIX + s)["input_ids"] for s in SUFFIXES]
    assert all(f[:len(head)] == head and len(f) > len(head) for f in full)
    return head, full, [f[len(head):] for f in full]


@pytest.mark.parametrize("use_lora", [True, False])
def test_prefix_cache_decodes_the_full_prompts_tokens(tiny_lora, use_lora):
    """Greedy decode of the suffixes after a cached prefix gives the tokens of the full prompts
    decoded without it (EOS stops included), and so does the uncached loop given the prefix."""
    from twosome_jax.model.generate import prefix_cache

    config, (graphdef, base, lora), tok = tiny_lora
    head, full, rest = _prefixed(tok)
    pad = tok.pad_token_id
    plain = generate(graphdef, base, lora, *pad_prompts(full, pad), max_new_tokens=NEW, eos_id=config.eos_token_id,
                     pad_id=pad, use_lora=use_lora)
    eos = int(np.asarray(plain.tokens)[0, 3])  # the 4th token of row 0 as EOS: rows stop at different steps
    plain = generate(graphdef, base, lora, *pad_prompts(full, pad), max_new_tokens=NEW, eos_id=eos, pad_id=pad,
                     use_lora=use_lora)
    assert len(set(np.asarray(plain.lengths).tolist())) > 1 and len({tuple(r) for r in np.asarray(plain.tokens)}) > 2
    prefix = prefix_cache(graphdef, base, lora, head, use_lora=use_lora)
    assert prefix.length == len(head) and prefix.kv.k.shape[1:3] == (1, len(head))
    for use_cache in (True, False):
        cached = generate(graphdef, base, lora, *pad_prompts(rest, pad, WIDTH), max_new_tokens=NEW, eos_id=eos,
                          pad_id=pad, use_lora=use_lora, prefix=prefix, use_cache=use_cache)
        np.testing.assert_array_equal(np.asarray(cached.tokens), np.asarray(plain.tokens))
        np.testing.assert_array_equal(np.asarray(cached.lengths), np.asarray(plain.lengths))


def test_prefix_cache_rejects_a_mismatch(tiny_lora):
    from twosome_jax.model.generate import prefix_cache

    config, (graphdef, base, lora), tok = tiny_lora
    head, _, rest = _prefixed(tok)
    prefix = prefix_cache(graphdef, base, lora, head, use_lora=True)
    ids, lens = pad_prompts(rest, tok.pad_token_id)
    with pytest.raises(ValueError, match="use_lora=True; this decode has use_lora=False") as e:
        generate(graphdef, base, lora, ids, lens, max_new_tokens=2, prefix=prefix, use_lora=False)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="prefix must be a PrefixCache"):
        generate(graphdef, base, lora, ids, lens, max_new_tokens=2, prefix=head)
    with pytest.raises(ValueError, match="non-empty list of token ids"):
        prefix_cache(graphdef, base, lora, [])
