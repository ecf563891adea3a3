"""Weight loading without torch: round trips through safetensors and GGUF, and clear errors."""

from __future__ import annotations

import json

import gguf
import jax.numpy as jnp
import numpy as np
import pytest

from twosome_jax.model import ModelLoadError, load_model, resolve_spec, save_hf_checkpoint
from twosome_jax.model.loading import _unpermute, hf_state_dict


def _logits(model, ids):
    return np.asarray(model.lm_head(model(jnp.asarray(ids, jnp.int32))))


IDS = np.random.default_rng(0).integers(3, 512, size=(1, 12))


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random", dtype="float32", seed=3)


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    config, model, tok = tiny
    return save_hf_checkpoint(model, tmp_path_factory.mktemp("tiny_hf"), tok)


def _permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (HF -> GGUF layout)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path, config, sd, arch="llama"):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(config.num_hidden_layers)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_rope_freq_base(config.rope_theta)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    w.add_vocab_size(config.vocab_size)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}
    for i in range(config.num_hidden_layers):
        for hf, gg in names.items():
            a = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                a = _permute(a, config.num_attention_heads)
            elif gg == "attn_k":
                a = _permute(a, config.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _one_line_error(spec, *fragments, **kw):
    with pytest.raises(ModelLoadError) as exc:
        load_model(spec, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    for n_head in (1, 2, 3):
        np.testing.assert_array_equal(_unpermute(_permute(w, n_head), n_head), w)
    assert not np.array_equal(_permute(w, 3), w)


def test_hf_dir_round_trip(tiny, tiny_dir):
    config, model, tok = tiny
    assert json.loads((tiny_dir / "config.json").read_text())["model_type"] == "llama"
    c2, m2, t2 = load_model(tiny_dir, dtype="float32")
    assert c2.replace(pad_token_id=config.pad_token_id) == config
    np.testing.assert_allclose(_logits(m2, IDS), _logits(model, IDS), atol=1e-6)
    assert t2("pick up the cup")["input_ids"] == tok("pick up the cup")["input_ids"]


def test_gguf_round_trip_unpermutes_qk(tiny, tmp_path):
    config, model, _ = tiny
    path = write_llama_gguf(tmp_path / "tiny.gguf", config, hf_state_dict(model))
    c2, m2, _ = load_model(path, dtype="float32", tokenizer=False)
    assert c2.num_key_value_heads == config.num_key_value_heads and c2.tie_word_embeddings
    np.testing.assert_allclose(_logits(m2, IDS), _logits(model, IDS), atol=1e-5)


def test_tiny_random_is_deterministic():
    a = _logits(load_model("tiny-random", seed=5)[1], IDS)
    b = _logits(load_model("tiny-random", seed=5)[1], IDS)
    c = _logits(load_model("tiny-random", seed=6)[1], IDS)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0


def test_bad_paths(tmp_path):
    _one_line_error(tmp_path / "missing.gguf", "missing.gguf", "no such file")
    _one_line_error(str(tmp_path / "nodir") + "/", "nodir", "no such file")
    _one_line_error("not-a-model-name", "not-a-model-name", "accepted:")
    txt = tmp_path / "weights.txt"
    txt.write_text("hello")
    _one_line_error(txt, "weights.txt", "not a .gguf")
    _one_line_error(tmp_path, str(tmp_path), "config.json")
    assert resolve_spec("tiny-random")[0] == "tiny-random"


def test_truncated_and_corrupt_safetensors(tiny_dir, tmp_path):
    import shutil

    d = tmp_path / "trunc"
    shutil.copytree(tiny_dir, d)
    st = d / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    _one_line_error(d, "model.safetensors", "truncated")
    st.write_bytes(b"\x07" * 64)
    _one_line_error(d, "model.safetensors", "corrupt")
    st.unlink()
    _one_line_error(d, "no model.safetensors")
    (d / "config.json").write_text("{not json")
    _one_line_error(d, "config.json", "invalid JSON")
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _one_line_error(d, "gpt2", "only 'llama'")


def test_bad_gguf_files(tiny, tmp_path):
    config, model, _ = tiny
    sd = hf_state_dict(model)
    good = write_llama_gguf(tmp_path / "good.gguf", config, sd)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.gguf"
    trunc.write_bytes(data[: len(data) // 2])
    _one_line_error(trunc, "trunc.gguf", tokenizer=False)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\xff" * 100)
    _one_line_error(junk, "junk.gguf", tokenizer=False)
    gpt2 = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(gpt2), "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _one_line_error(gpt2, "gpt2.gguf", "'gpt2'", "only 'llama'")


def test_weight_cache_is_safe(tmp_path):
    from flax import nnx

    _, src, tok = load_model("tiny-random", dtype="float32", seed=11)
    d = save_hf_checkpoint(src, tmp_path / "ckpt", tok)
    _, m1, _ = load_model(d, dtype="float32")
    _, m2, _ = load_model(d, dtype="float32")  # served from the in-process cache
    ref = _logits(m2, IDS)
    # changing one model's weights does not touch the other
    st = nnx.state(m1, nnx.Param)
    for _, v in nnx.to_flat_state(st):
        v.set_value(v.get_value() * 0)
    nnx.update(m1, st)
    np.testing.assert_array_equal(_logits(m2, IDS), ref)
    np.testing.assert_array_equal(_logits(load_model(d, dtype="float32")[1], IDS), ref)
    # a rewritten checkpoint is re-read
    _, other, _ = load_model("tiny-random", dtype="float32", seed=12)
    save_hf_checkpoint(other, d)
    np.testing.assert_allclose(_logits(load_model(d, dtype="float32")[1], IDS), _logits(other, IDS), atol=1e-6)
