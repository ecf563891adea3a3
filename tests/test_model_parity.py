"""Logits parity of our Flax LLaMA against transformers' LlamaForCausalLM (torch, float32)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from twosome_jax.model import LoRAConfig, LoRAParam, load_model, rope_inv_freq, split_model  # noqa: E402
from twosome_jax.tokenizer import tiny_tokenizer  # noqa: E402

TOL = 1e-3
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def make_hf_checkpoint(path, *, tie=True, rope=None, shard=False, save_dtype=None, seed=0,
                       layers=3):
    """Write a random tiny LLaMA (safetensors + tokenizer files) to ``path``; return the torch model."""
    cfg = transformers.LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0},
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)
    if save_dtype is not None:
        model = model.to(save_dtype)
    model.save_pretrained(path, max_shard_size="40KB" if shard else "5GB")
    tiny_tokenizer().save_pretrained(path)
    if save_dtype is not None:  # reference: the stored (rounded) weights, computed in float32
        model = transformers.LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model


def torch_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(np.asarray(ids), dtype=torch.long)).logits.float().numpy()


def our_logits(model, ids):
    ids = jnp.asarray(ids, jnp.int32)
    return np.asarray(model.lm_head(model(ids)))


def assert_parity(ours, ref):
    diff = float(np.max(np.abs(ours - ref)))
    assert diff <= TOL, f"max abs logit diff {diff}"
    assert (ours.argmax(-1) == ref.argmax(-1)).all(), "argmax differs"
    return diff


@pytest.mark.parametrize(
    "tie,rope,shard,save_dtype",
    [
        (True, None, False, None),
        (False, LLAMA3_ROPE, True, None),
        (False, None, False, "bfloat16"),
    ],
    ids=["tied-single", "untied-llama3rope-sharded", "bf16-checkpoint"],
)
def test_hf_safetensors_parity(tmp_path, tie, rope, shard, save_dtype):
    ref = make_hf_checkpoint(tmp_path, tie=tie, rope=rope, shard=shard,
                             save_dtype=getattr(torch, save_dtype) if save_dtype else None)
    if shard:
        assert (tmp_path / "model.safetensors.index.json").exists()
    config, model, tok = load_model(tmp_path, dtype="float32")
    assert config.tie_word_embeddings == tie
    assert (model.lm_head_proj is None) == tie
    if rope is not None:
        assert config.rope_scaling_dict["rope_type"] == "llama3"
        np.testing.assert_allclose(rope_inv_freq(config), ref.model.rotary_emb.inv_freq.numpy(), rtol=1e-6)
    ids = np.random.default_rng(0).integers(3, 512, size=(2, 30))
    assert_parity(our_logits(model, ids), torch_logits(ref, ids))
    # the tokenizer files in the directory are used
    assert tok("pick up the cup")["input_ids"] == tiny_tokenizer()("pick up the cup")["input_ids"]


def test_lora_matches_peft(tmp_path):
    """Our LoRA (all seven projections) equals PEFT's with the same A, B and alpha/r scaling."""
    peft = pytest.importorskip("peft")
    ref = make_hf_checkpoint(tmp_path, tie=False, layers=2)
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lcfg = LoRAConfig(rank=4, alpha=12, targets=targets)
    _, model, _ = load_model(tmp_path, dtype="float32", lora=lcfg)
    # give B nonzero values so the adapters matter
    rng = np.random.default_rng(1)
    lora_state = nnx.state(model, LoRAParam)
    for path, var in nnx.to_flat_state(lora_state):
        if path[-1] == "lora_b":
            var.set_value(jnp.asarray(rng.normal(0, 0.1, var.get_value().shape), jnp.float32))
    nnx.update(model, lora_state)
    _, _, lora_state = split_model(model)
    pm = peft.get_peft_model(ref, peft.LoraConfig(r=4, lora_alpha=12, target_modules=list(targets),
                                                 lora_dropout=0.0, bias="none"))
    flat = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(lora_state)}
    with torch.no_grad():
        for name, mod in pm.named_modules():
            if not hasattr(mod, "lora_A") or "default" not in getattr(mod, "lora_A", {}):
                continue
            parts = name.split(".")
            i = int(parts[parts.index("layers") + 1])
            group, proj = parts[-2], parts[-1]
            a = np.asarray(flat[("layers", group, proj, "lora_a")][i])
            b = np.asarray(flat[("layers", group, proj, "lora_b")][i])
            mod.lora_A["default"].weight.copy_(torch.from_numpy(a.T.copy()))
            mod.lora_B["default"].weight.copy_(torch.from_numpy(b.T.copy()))
    ids = np.random.default_rng(2).integers(3, 512, size=(2, 24))
    with torch.no_grad():
        ref_logits = pm(input_ids=torch.tensor(ids)).logits.numpy()
    ours = np.asarray(model.lm_head(model(jnp.asarray(ids, jnp.int32), use_lora=True)))
    assert_parity(ours, ref_logits)
    base = np.asarray(model.lm_head(model(jnp.asarray(ids, jnp.int32), use_lora=False)))
    assert np.max(np.abs(base - ref_logits)) > 1e-2  # the adapters did change something


@pytest.mark.smollm2
def test_smollm2_gguf_parity(smollm2_gguf):
    """Real SmolLM2 Q4_1 GGUF: ours vs transformers loading the same file (gguf_file=)."""
    config, model, tok = load_model(smollm2_gguf, dtype="float32")
    assert config.num_hidden_layers == 30
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32).eval()
    text = ("You are a robot in a kitchen. There is a tomato, a lettuce and an onion on the table. "
            "Your task is to make a salad. What should you do next? You should first pick up")
    ids = tok(text)["input_ids"][:30]
    assert len(ids) == 30
    diff = assert_parity(our_logits(model, [ids]), torch_logits(ref, [ids]))
    print(f"SmolLM2 GGUF parity: max abs logit diff {diff:.2e} over 30 tokens")

    # the scoring path on the real model and its BOS-less tokenizer, against torch
    from twosome_jax.score import score_actions

    assert tok("You should")["input_ids"][0] != config.bos_token_id  # SmolLM2 adds no BOS
    prompt = "You are in the kitchen. There is a tomato on the table. You should"
    actions = ["pick up the tomato", "go to the sofa"]
    res = score_actions(model, tok, prompt, actions)
    n_prompt = len(tok(prompt)["input_ids"])
    for a, r in zip(actions, res["actions"]):
        ids = tok(prompt + " " + a)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(ref(torch.tensor([ids])).logits[0].float(), -1).numpy()
        want = sum(lp[t - 1, ids[t]] for t in range(n_prompt, len(ids)))
        assert r["tokens"] == len(ids) - n_prompt
        assert abs(r["logprob_sum"] - want) < 1e-3
    assert res["policy"]["word"][0] > 0.5  # the sensible action wins
