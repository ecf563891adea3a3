"""PEFT export: our adapters, loaded by peft onto transformers' LLaMA, give our logits."""

import json

import jax.numpy as jnp
import numpy as np
from conftest import randomize_model
import pytest
from flax import nnx

from twosome_jax.export import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterError,
    export_critic,
    export_peft_adapter,
    import_peft_adapter,
    read_adapter_config,
)
from twosome_jax.model import ALL_TARGETS, LoRAConfig, LoRAParam, load_model

TOL = 1e-4


def _randomize(model, seed):
    """Give every base weight and every adapter (B included) clearly nonzero random values."""
    randomize_model(model, seed)


def _write_hf_checkpoint(model, config, path):
    """Our base weights as a transformers LLaMA directory (config.json + model.safetensors)."""
    from safetensors.numpy import save_file

    tensors = {}
    for p, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        a = np.asarray(var.get_value(), np.float32)
        if p[0] == "layers":
            for i in range(config.num_hidden_layers):
                if len(p) == 4:  # ("layers", "self_attn"|"mlp", proj, "kernel"): [in, out] -> [out, in]
                    tensors[f"model.layers.{i}.{p[1]}.{p[2]}.weight"] = a[i].T
                else:  # ("layers", norm, "scale")
                    tensors[f"model.layers.{i}.{p[1]}.weight"] = a[i]
        else:
            name = {("embed_tokens", "embedding"): "model.embed_tokens.weight",
                    ("norm", "scale"): "model.norm.weight",
                    ("lm_head_proj", "kernel"): "lm_head.weight"}[tuple(p)]
            tensors[name] = a.T if p[0] == "lm_head_proj" else a
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config.to_hf_dict()))


def _lora_flat(state):
    return {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    lcfg = LoRAConfig(rank=4, alpha=12.0, targets=ALL_TARGETS)
    config, model, _ = load_model("tiny-random", dtype="float32", lora=lcfg)
    _randomize(model, seed=0)
    root = tmp_path_factory.mktemp("export")
    _write_hf_checkpoint(model, config, root / "base")
    lora = nnx.state(model, LoRAParam)
    export_peft_adapter(lora, config, lcfg, root / "adapter", str(root / "base"))
    return config, model, lcfg, root


def test_peft_loads_export_and_logits_match(exported):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    config, model, lcfg, root = exported
    cfg = json.loads((root / "adapter" / ADAPTER_CONFIG).read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["base_model_name_or_path"]) == (4, 12, str(root / "base"))

    base = transformers.LlamaForCausalLM.from_pretrained(root / "base", dtype=torch.float32).eval()
    ids = np.random.default_rng(1).integers(3, config.vocab_size, size=(2, 20))
    with torch.no_grad():
        ref_base = base(input_ids=torch.tensor(ids)).logits.numpy()
        pm = peft.PeftModel.from_pretrained(base, root / "adapter").eval()
        ref = pm(input_ids=torch.tensor(ids)).logits.numpy()
    x = jnp.asarray(ids, jnp.int32)
    ours = np.asarray(model.lm_head(model(x, use_lora=True)))
    ours_base = np.asarray(model.lm_head(model(x, use_lora=False)))
    np.testing.assert_allclose(ours_base, ref_base, atol=TOL, rtol=0)  # the written base is right
    assert np.max(np.abs(ours - ours_base)) > 100 * TOL  # the adapters matter
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_import_round_trips_exactly(exported):
    config, model, lcfg, root = exported
    assert read_adapter_config(root / "adapter") == lcfg
    _, fresh, _ = load_model("tiny-random", dtype="float32", lora=lcfg, seed=7)
    before = _lora_flat(nnx.state(fresh, LoRAParam))
    state = import_peft_adapter(root / "adapter", fresh)
    want = _lora_flat(nnx.state(model, LoRAParam))
    got = _lora_flat(nnx.state(fresh, LoRAParam))
    assert got.keys() == want.keys() == _lora_flat(state).keys()
    for k in want:
        assert np.array_equal(got[k], want[k]), k
        assert not np.array_equal(before[k], want[k])
    # exporting the imported state reproduces the file byte for byte
    export_peft_adapter(state, config, lcfg, root / "again", str(root / "base"))
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        assert (root / "again" / name).read_bytes() == (root / "adapter" / name).read_bytes()


def test_pure_dict_state_is_accepted(exported, tmp_path):
    config, model, lcfg, root = exported
    pure = nnx.to_pure_dict(nnx.state(model, LoRAParam))
    export_peft_adapter(pure, config, lcfg, tmp_path, "base")
    assert (tmp_path / ADAPTER_WEIGHTS).read_bytes() == (root / "adapter" / ADAPTER_WEIGHTS).read_bytes()


def test_mismatches_are_clear_errors(exported, tmp_path):
    config, model, lcfg, root = exported
    _, other, _ = load_model("tiny-random", dtype="float32", lora=LoRAConfig(rank=8, alpha=16.0))
    with pytest.raises(AdapterError, match="adapter has rank 4, alpha 12, targets .* the model has rank 8"):
        import_peft_adapter(root / "adapter", other)
    with pytest.raises(AdapterError, match="not a PEFT adapter directory"):
        import_peft_adapter(tmp_path, model)
    pure = nnx.to_pure_dict(nnx.state(model, LoRAParam))
    with pytest.raises(AdapterError, match="missing .*unexpected"):
        export_peft_adapter(pure, config, LoRAConfig(rank=4, alpha=12.0), tmp_path, "base")
    stacked = {"layers": {g: {t: {k: np.stack([v, v]) for k, v in leaves.items()} for t, leaves in grp.items()}
                          for g, grp in pure["layers"].items()}}
    with pytest.raises(AdapterError, match="leading seed axis"):
        export_peft_adapter(stacked, config, lcfg, tmp_path, "base")


def test_export_critic(tmp_path):
    from safetensors import safe_open

    rng = np.random.default_rng(0)
    critic = {"w0": rng.standard_normal((64, 16)).astype(np.float32),
              "w1": jnp.asarray(rng.standard_normal((16, 1)), jnp.float32)}
    out = export_critic(critic, tmp_path / "run" / "critic.safetensors")
    with safe_open(str(out), "np") as f:
        assert sorted(f.keys()) == ["w0", "w1"]
        assert np.array_equal(f.get_tensor("w0"), critic["w0"])
        assert np.array_equal(f.get_tensor("w1"), np.asarray(critic["w1"]))
        assert f.metadata()["layout"].startswith("x @ w")
