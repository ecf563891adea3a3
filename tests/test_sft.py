"""Adapter SFT (twosome_jax/sft.py): the response-only loss against transformers' LLaMA, the
mask, one step, the PEFT export, LoRA dropout, the data order and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import randomize_model
from flax import nnx

from twosome_jax.model import (
    LoRAConfig,
    LoRAParam,
    load_model,
    save_hf_checkpoint,
    split_model,
)
from twosome_jax.model.llama import StackedLinear
from twosome_jax.sft import (
    Example,
    SFTError,
    SFTSettings,
    encode_pairs,
    evaluate_loss,
    make_batches,
    make_train_step,
    run_sft,
    sft_loss,
    sft_optimizer,
    split_pairs,
    training_order,
)

TOL = 1e-4
# small adapters for the tiny model; the optimisation settings stay the paper's unless a test says
SMALL = {"lora_rank": 4, "lora_alpha": 8.0, "max_length": 128}
PAIRS = [
    ("There is a fixed table in the room. What should you do first?", " You should first look around."),
    ("You notice a cup on the table. Currently you are holding nothing.", " Take the plate, wash the plate."),
    ("The cook walks to the kitchen.", " She cuts the bread on the board, puts it in the bowl and serves the dish."),
]


def _model(seed=0, randomize=True, settings=None):
    settings = settings or SFTSettings(**SMALL)
    config, model, tok = load_model("tiny-random", dtype="float32", lora=settings.lora_config(), seed=seed)
    if randomize:
        randomize_model(model, seed)
    return config, model, tok


def _flat(state):
    return {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


# one compiled loss for every test (same model structure and batch shape: one compilation)
_LOSS = jax.jit(sft_loss, static_argnums=(0, 4))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A randomized tiny model with adapters, its base as a transformers checkpoint directory, and
    transformers' LlamaForCausalLM of that base with our LoRA merged into its weights."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config, model, tok = _model()
    hf_dir = save_hf_checkpoint(model, tmp_path_factory.mktemp("sft") / "base")
    merged = transformers.LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    lora = _flat(nnx.state(model, LoRAParam))
    with torch.no_grad():
        for i, layer in enumerate(merged.model.layers):
            for proj in model.lora_config.targets:
                a, b = lora[("layers", "self_attn", proj, "lora_a")][i], lora[("layers", "self_attn", proj, "lora_b")][i]
                getattr(layer.self_attn, proj).weight.add_(torch.from_numpy((a @ b * model.lora_config.scaling).T.copy()))
    return config, model, tok, hf_dir, merged


def _torch_token_losses(ref, seqs, n_prompt):
    """Per-token cross-entropy [rows, T-1] of transformers' model on right-padded ``seqs``, with
    the labels of the first ``n_prompt[i]`` tokens and of the padding ignored (0 there)."""
    import torch

    T = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs])
    labels = torch.tensor([[-100] * n + s[n:] + [-100] * (T - len(s)) for s, n in zip(seqs, n_prompt)])
    with torch.no_grad():
        logits = ref(input_ids=ids, attention_mask=mask).logits
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100,
                                               reduction="none")
    return ce.numpy(), (labels[:, 1:] != -100).numpy()


def test_loss_matches_torch_masked_cross_entropy(tiny):
    """Our batch loss and eval loss equal transformers' LLaMA (LoRA merged) computing the
    cross-entropy of the response tokens and the EOS only, from labels built here."""
    _, model, tok, _, merged = tiny
    pairs = PAIRS + PAIRS[1:]
    seqs, n_prompt = [], []
    for prompt, response in pairs:
        p = tok(prompt)["input_ids"]
        seqs.append(p + tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        n_prompt.append(len(p))
    ce, counted = _torch_token_losses(merged, seqs, n_prompt)

    examples = encode_pairs(tok, pairs, 128)
    assert [list(e.ids) for e in examples] == seqs
    graphdef, base, lora = split_model(model)
    (batch,) = make_batches(examples, range(3), batch_size=4)  # three pairs and one empty row
    got = float(_LOSS(graphdef, base, lora, batch, 0.0))
    want = ce[:3].sum() / counted[:3].sum()
    assert abs(got - want) < TOL, (got, want)
    # over several batches the eval loss is the token-weighted mean over all pairs
    got_eval = evaluate_loss(graphdef, base, lora, examples, batch_size=4)
    want_eval = ce.sum() / counted.sum()
    assert abs(got_eval - want_eval) < TOL, (got_eval, want_eval)
    assert abs(want_eval - want) > 10 * TOL  # (the two differ)
    # and the LoRA is part of it
    no_lora = float(_LOSS(graphdef, base, jax.tree.map(jnp.zeros_like, lora), batch, 0.0))
    assert abs(no_lora - want) > 100 * TOL


def _set(targets, t, token):
    out = np.asarray(targets).copy()
    out[0, t] = token
    return out


def test_only_response_tokens_count(tiny):
    _, model, _, _, merged = tiny
    graphdef, base, lora = split_model(model)
    ids = tuple(range(5, 33))  # 28 tokens: the prompt is the first 20, then the response and its EOS
    (batch,) = make_batches([Example(ids, prompt_len=20)], [0], batch_size=4)
    want_weights = np.zeros(32)
    want_weights[19:27] = 1  # the inputs at 19..26 predict tokens 20..27
    np.testing.assert_array_equal(np.asarray(batch.weights)[0], want_weights)
    assert not np.asarray(batch.weights)[1:].any()  # empty rows count nothing
    loss = float(_LOSS(graphdef, base, lora, batch, 0.0))

    # by hand: -mean log p(ids[t] | ids[:t]) over the response tokens t = 20..27 (torch's logits)
    ce, _ = _torch_token_losses(merged, [list(ids)], [0])
    assert abs(loss - ce[0, 19:27].mean()) < TOL

    for t in (0, 10, 18):  # targets inside the prompt: the loss does not see them
        assert float(_LOSS(graphdef, base, lora, batch.replace(targets=_set(batch.targets, t, 7)), 0.0)) == loss
    for t in (19, 26):  # the first response token, the EOS
        changed = float(_LOSS(graphdef, base, lora, batch.replace(targets=_set(batch.targets, t, 7)), 0.0))
        assert abs(changed - loss) > 1e-3


def test_encode_pairs_layout():
    _, _, tok = _model(randomize=False)
    prompt, response = PAIRS[0]
    (e,) = encode_pairs(tok, [(prompt, response)], 128)
    p = tok(prompt)["input_ids"]
    assert e.prompt_len == len(p) and list(e.ids[:len(p)]) == p and p[0] == tok.bos_token_id
    assert list(e.ids[len(p):-1]) == tok(response, add_special_tokens=False)["input_ids"]
    assert e.ids[-1] == tok.eos_token_id
    # a response decoded together with its EOS does not get a second one; an empty one is just the EOS
    assert encode_pairs(tok, [(prompt, response + tok.eos_token)], 128) == [e]
    assert encode_pairs(tok, [(prompt, "")], 128)[0].ids == tuple(p) + (tok.eos_token_id,)


def test_one_step_lowers_the_loss_and_trains_only_the_lora():
    settings = SFTSettings(**SMALL, learning_rate=1e-2)  # dropout 0.1 on
    _, model, tok = _model(randomize=False, settings=settings)  # fresh adapters: B = 0
    graphdef, base, lora = split_model(model)
    base_before, lora_before = _flat(base), _flat(lora)
    assert all(not v.any() for k, v in lora_before.items() if k[-1] == "lora_b")
    examples = encode_pairs(tok, PAIRS, settings.max_length)
    (batch,) = make_batches(examples, range(3), settings.batch_size, settings.seed)
    before = float(_LOSS(graphdef, base, lora, batch, 0.0))

    step = make_train_step(graphdef, base, settings)
    new_lora, _, step_loss = step(lora, sft_optimizer(settings).init(lora), batch)
    # the step reports its batch's loss before the update, with the batch's dropout mask
    assert abs(float(step_loss) - float(_LOSS(graphdef, base, lora, batch, 0.1))) < 1e-6
    after = float(_LOSS(graphdef, base, new_lora, batch, 0.0))
    assert after < before - 1e-3, (before, after)
    changed = _flat(new_lora)
    assert all(changed[k].any() for k in changed if k[-1] == "lora_b")

    # run_sft: the base stays bit-identical, the model itself is not changed, the adapters are
    result = run_sft(model, tok, PAIRS * 4, settings)
    assert (result.train_pairs, result.eval_pairs, result.losses.shape) == (10, 2, (3,))
    assert np.isfinite(result.losses).all() and np.isfinite(result.eval_loss)
    _, base_after, lora_model = split_model(model)
    for k, v in _flat(base_after).items():
        assert np.array_equal(v, base_before[k]), k
    for k, v in _flat(lora_model).items():
        assert np.array_equal(v, lora_before[k]), k
    trained = _flat(result.lora)
    assert trained.keys() == lora_before.keys()
    assert all(not np.array_equal(trained[k], lora_before[k]) for k in trained)


def test_peft_export_of_the_sft_adapter(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    config, model, tok, hf_dir, _ = tiny
    settings = SFTSettings(**SMALL, learning_rate=1e-2)
    result = run_sft(model, tok, PAIRS * 2, settings, adapter_dir=tmp_path / "adapter",
                     base_model_name_or_path=str(hf_dir))
    graphdef, base, lora = split_model(model)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(lora), jax.tree.leaves(result.lora)))

    ids = np.random.default_rng(0).integers(3, config.vocab_size, size=(2, 24))
    ref = transformers.LlamaForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    pm = peft.PeftModel.from_pretrained(ref, tmp_path / "adapter").eval()
    # PEFT reads the dropout the adapter was trained with (eval mode does not apply it)
    assert pm.peft_config["default"].lora_dropout == settings.lora_dropout > 0
    with torch.no_grad():
        want = pm(input_ids=torch.tensor(ids)).logits.numpy()
    trained = nnx.merge(graphdef, base, result.lora)
    x = jnp.asarray(ids, jnp.int32)
    ours = np.asarray(trained.lm_head(trained(x)))
    np.testing.assert_allclose(ours, want, atol=TOL, rtol=0)
    before = np.asarray(model.lm_head(model(x)))  # the adapter before SFT
    assert np.max(np.abs(ours - before)) > 100 * TOL


def test_lora_dropout_drops_the_lora_input_only(tiny):
    """PEFT's lora.Linear in training mode: x @ W + dropout(x) @ A @ B * alpha/r, inverted dropout."""
    cfg = load_model("tiny-random", dtype="float32", tokenizer=False)[0]
    lin = StackedLinear(1, 64, 64, config=cfg, lora=LoRAConfig(rank=64, alpha=64.0), rngs=nnx.Rngs(0))
    # one layer's slice, as inside the scan: W = 0 and A = B = I, so the output is the LoRA input
    lin.kernel.set_value(jnp.zeros((64, 64)))
    lin.lora_a.set_value(jnp.eye(64))
    lin.lora_b.set_value(jnp.eye(64))
    x = jnp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, (32, 64)), jnp.float32)
    assert np.array_equal(np.asarray(lin(x)), np.asarray(x))
    y = np.asarray(lin(x, True, (0.25, jax.random.key(3))))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.03
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)
    assert np.array_equal(y, np.asarray(lin(x, True, (0.25, jax.random.key(3)))))  # the key decides

    # with B = 0 the output is the base path's, whatever the mask
    lin.kernel.set_value(x[:, :64].T @ x[:, :64] / 100)
    lin.lora_b.set_value(jnp.zeros((64, 64)))
    assert np.array_equal(np.asarray(lin(x, True, (0.5, jax.random.key(3)))), np.asarray(lin(x)))

    # in the model, through the compiled loss: the key decides the masks of every layer
    _, model, tok, _, _ = tiny
    graphdef, base, lora = split_model(model)
    (batch,) = make_batches(encode_pairs(tok, PAIRS, 128), range(3), batch_size=4, seed=0)
    plain = float(_LOSS(graphdef, base, lora, batch, 0.0))
    dropped = float(_LOSS(graphdef, base, lora, batch, 0.1))
    assert abs(dropped - plain) > 1e-4
    assert float(_LOSS(graphdef, base, lora, batch, 0.1)) == dropped
    other_key = batch.replace(dropout_key=jax.random.key(1))
    assert abs(float(_LOSS(graphdef, base, lora, other_key, 0.1)) - dropped) > 1e-5


def test_split_and_order():
    assert split_pairs(list(range(10)), 0.1) == (list(range(9)), [9])  # AdaRefiner int(n * 0.9)
    assert split_pairs(list(range(5)), 0.1) == (list(range(4)), [4])
    assert split_pairs(list(range(5)), 0.0) == (list(range(5)), [])
    lengths = list(np.random.default_rng(0).integers(5, 200, 100))
    s = SFTSettings(batch_size=4)
    order = training_order(lengths, s)
    assert sorted(order) == list(range(100)) and not np.array_equal(order, np.arange(100))
    assert np.array_equal(order, training_order(lengths, s))  # seeded
    assert not np.array_equal(order, training_order(lengths, s, epoch=1))
    # mega-batches of min(100 // 16, 50) = 6 batches (24 pairs), each sorted by length, longest first
    for start in range(0, 100, 24):
        mb = [lengths[i] for i in order[start:start + 24]]
        assert mb == sorted(mb, reverse=True)
    assert np.array_equal(training_order(lengths, SFTSettings(shuffle=False)), np.arange(100))


def test_bad_input_is_a_one_line_error():
    settings = SFTSettings(**SMALL)
    _, model, tok = _model(randomize=False)
    cases = [
        (lambda: run_sft(model, tok, [], settings), "no training pairs: 0 pair"),
        (lambda: run_sft(model, tok, [PAIRS[0], ("the cook " * 100, " walks")], SFTSettings(**SMALL, eval_fraction=0.0)),
         "pair 1: prompt \\+ response \\+ EOS is .* tokens, more than max_length 128"),
        (lambda: SFTSettings.from_mapping({"lr": 1e-3, "batch_size": 2}), "unknown SFT setting\\(s\\) \\['lr'\\]; accepted: lora_rank"),
        (lambda: SFTSettings(lora_dropout=1.0), "lora_dropout=1.0 must be in \\[0, 1\\)"),
        (lambda: SFTSettings(lora_targets=("q",)), "unknown LoRA target"),
        (lambda: run_sft(model, tok, PAIRS, SFTSettings()), "the model has rank 4, alpha 8, .* need rank 64"),
        (lambda: run_sft(model, tok, PAIRS, SFTSettings(**dict(SMALL, max_length=4096))), "max_length=4096 is more than"),
        (lambda: run_sft(model, tok, [("a prompt", 3), ("b", "c")], settings), "pair 0 is tuple"),
        (lambda: run_sft(model, tok, [("", "x"), ("b", "c")], settings), "pair 0 has an empty prompt"),
        (lambda: run_sft(model, tok, PAIRS, settings, adapter_dir="x"), "adapter_dir needs base_model_name_or_path"),
    ]
    for call, match in cases:
        with pytest.raises(SFTError, match=match) as info:
            call()
        assert "\n" not in str(info.value)
    assert SFTSettings.from_mapping({"batch_size": 2}).batch_size == 2
