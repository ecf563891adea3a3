"""Export trained weights for PyTorch users: LoRA adapters in the PEFT format, the critic.

``export_peft_adapter`` writes ``adapter_config.json`` + ``adapter_model.safetensors`` that
``peft.PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(BASE), DIR)`` loads onto the
same base model. The layout conversion is the whole job:

* ours (``twosome_jax/model/llama.py``): per target projection, ``lora_a`` [L, in, r] and
  ``lora_b`` [L, r, out], stacked over the L decoder layers, applied as ``x @ a @ b * alpha/r``
  (Flax orientation, ``x @ kernel``);
* PEFT: per layer i, ``base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_A.weight``
  [r, in] and ``...lora_B.weight`` [out, r] (torch ``nn.Linear`` orientation, ``x @ W.T``), with
  the same ``lora_alpha / r`` scaling.

So PEFT's A is our ``lora_a[i].T`` and its B our ``lora_b[i].T``. ``import_peft_adapter`` is the
inverse; it also accepts adapters trained with PEFT itself, as long as they use plain LoRA on a
subset of the seven LLaMA projections of every layer.

Only the adapter weights are written; the base model is referenced by name/path in
``adapter_config.json`` (``base_model_name_or_path``) and must be the same checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from twosome_jax.atomic import write_atomic

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# projection -> its module group inside a LLaMA decoder layer (HF and our names agree)
_GROUP = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
_PEFT_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])(?:\.default)?\.weight$")


class AdapterError(ValueError):
    """An adapter that does not fit the model (or is not a plain PEFT LoRA); one-line message."""


def _io_dims(model_config) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection, from the LLaMA config."""
    c = model_config
    D, F = c.hidden_size, c.intermediate_size
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    return {"q_proj": (D, q), "k_proj": (D, kv), "v_proj": (D, kv), "o_proj": (q, D),
            "gate_proj": (D, F), "up_proj": (D, F), "down_proj": (F, D)}


def _flatten(tree: Any) -> dict[tuple[str, ...], np.ndarray]:
    """{path: numpy array} of an ``nnx.State``, a nested dict of arrays, or of ``nnx.Variable``s."""
    from flax import nnx

    if isinstance(tree, nnx.State):
        tree = nnx.to_pure_dict(tree)
    out = {}

    def walk(prefix, node):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(prefix + (str(k),), v)
        else:
            out[prefix] = np.asarray(node.get_value() if isinstance(node, nnx.Variable) else node)

    walk((), tree)
    return out


def _alpha_json(alpha: float):
    return int(alpha) if float(alpha).is_integer() else float(alpha)


def export_peft_adapter(lora_state, model_config, lora_config, out_dir: str | os.PathLike,
                        base_model_name_or_path: str, *, lora_dropout: float = 0.0) -> Path:
    """Write ``lora_state`` (one seed's adapters) as a PEFT LoRA adapter directory.

    ``lora_state``: the ``LoRAParam`` state of a ``Llama`` (``nnx.State`` or its pure dict,
    ``{"layers": {"self_attn": {"q_proj": {"lora_a": [L,in,r], "lora_b": [L,r,out]}}}}``).
    ``model_config``: the ``LlamaConfig``; ``lora_config``: the ``LoRAConfig`` (rank, alpha,
    targets). ``lora_dropout``: the dropout the adapters were trained with (PEFT records it; it
    does nothing at inference). Returns ``out_dir`` as a Path.
    """
    from safetensors.numpy import save_file

    flat = _flatten(lora_state)
    L = model_config.num_hidden_layers
    r = lora_config.rank
    dims = _io_dims(model_config)
    expected = {("layers", _GROUP[t], t, ab) for t in lora_config.targets for ab in ("lora_a", "lora_b")}
    if set(flat) != expected:
        missing = sorted(".".join(p) for p in expected - set(flat))
        extra = sorted(".".join(p) for p in set(flat) - expected)
        raise AdapterError(f"lora_state does not match lora targets {list(lora_config.targets)}: "
                           f"missing {missing}, unexpected {extra}")
    tensors = {}
    for t in lora_config.targets:
        d_in, d_out = dims[t]
        a, b = flat[("layers", _GROUP[t], t, "lora_a")], flat[("layers", _GROUP[t], t, "lora_b")]
        if a.shape != (L, d_in, r) or b.shape != (L, r, d_out):
            hint = (" (a leading seed axis? export one seed at a time: jax.tree.map(lambda x: x[i], lora))"
                    if a.ndim == 4 else "")
            raise AdapterError(f"{t}: lora_a {a.shape} / lora_b {b.shape}, expected ({L}, {d_in}, {r}) / "
                               f"({L}, {r}, {d_out}) for this model and rank{hint}")
        prefix = f"base_model.model.model.layers.{{i}}.{_GROUP[t]}.{t}"
        for i in range(L):
            p = prefix.format(i=i)
            tensors[f"{p}.lora_A.weight"] = np.ascontiguousarray(a[i].T, dtype=np.float32)
            tensors[f"{p}.lora_B.weight"] = np.ascontiguousarray(b[i].T, dtype=np.float32)
    config = {
        # fields understood by every PEFT release since 0.4 (newer ones default the rest)
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base_model_name_or_path),
        "revision": None,
        "inference_mode": True,
        "r": r,
        "lora_alpha": _alpha_json(lora_config.alpha),
        "lora_dropout": float(lora_dropout),
        "target_modules": list(lora_config.targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / ADAPTER_WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    write_atomic(out / ADAPTER_CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return out


def read_adapter_config(adapter_dir: str | os.PathLike):
    """The ``LoRAConfig`` (rank, alpha, targets) to build a model that ``import_peft_adapter``
    accepts, from an adapter directory's config and tensor names."""
    return _lora_config_of(*_read_adapter(Path(adapter_dir)))


def _lora_config_of(cfg: dict, tensors: dict):
    from twosome_jax.model import LoRAConfig

    targets = sorted({m.group(3) for m in map(_PEFT_KEY.match, tensors)}, key=list(_GROUP).index)
    return LoRAConfig(rank=int(cfg["r"]), alpha=float(cfg["lora_alpha"]), targets=tuple(targets))


def _read_adapter(d: Path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    cfg_path, w_path = d / ADAPTER_CONFIG, d / ADAPTER_WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise AdapterError(f"{d}: not a PEFT adapter directory (no {p.name})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise AdapterError(f"{cfg_path}: invalid JSON ({e})") from None
    unsupported = [
        (cfg.get("peft_type", "LORA") != "LORA", f"peft_type {cfg.get('peft_type')!r} (only LORA)"),
        (cfg.get("use_dora", False), "use_dora"),
        (cfg.get("use_rslora", False), "use_rslora"),
        (cfg.get("fan_in_fan_out", False), "fan_in_fan_out"),
        (cfg.get("bias", "none") != "none", f"bias {cfg.get('bias')!r}"),
        (cfg.get("modules_to_save"), "modules_to_save"),
        (cfg.get("rank_pattern") or cfg.get("alpha_pattern"), "rank_pattern/alpha_pattern"),
    ]
    bad = [what for cond, what in unsupported if cond]
    if bad:
        raise AdapterError(f"{cfg_path}: unsupported adapter setting(s): {', '.join(bad)}")
    tensors = load_file(str(w_path))
    odd = [k for k in tensors if not _PEFT_KEY.match(k) or _PEFT_KEY.match(k).group(3) not in _GROUP]
    if odd:
        raise AdapterError(f"{w_path}: not a LLaMA projection LoRA tensor: {odd[0]}"
                           + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""))
    return cfg, tensors


def import_peft_adapter(adapter_dir: str | os.PathLike, model):
    """Load a PEFT LoRA adapter into ``model`` (a ``Llama`` built with a matching ``LoRAConfig``,
    see ``read_adapter_config``), in place. Returns the model's new ``LoRAParam`` state."""
    import jax.numpy as jnp
    from flax import nnx

    from twosome_jax.model import LoRAParam

    d = Path(adapter_dir)
    cfg, tensors = _read_adapter(d)
    lc = model.lora_config
    if lc is None:
        raise AdapterError("the model has no LoRA adapters; build it with lora=read_adapter_config(DIR)")
    want = _lora_config_of(cfg, tensors)
    scale_file = float(cfg["lora_alpha"]) / float(cfg["r"])
    if (want.rank, set(want.targets)) != (lc.rank, set(lc.targets)) or not math.isclose(scale_file, lc.scaling):
        raise AdapterError(
            f"{d}: adapter has rank {want.rank}, alpha {want.alpha:g}, targets {list(want.targets)}; "
            f"the model has rank {lc.rank}, alpha {lc.alpha:g}, targets {list(lc.targets)}")
    L = model.config.num_hidden_layers
    dims = _io_dims(model.config)
    state = nnx.state(model, LoRAParam)
    for path, var in nnx.to_flat_state(state):
        _, group, t, ab = path
        d_in, d_out = dims[t]
        key = "A" if ab == "lora_a" else "B"
        layers = []
        for i in range(L):
            name = f"base_model.model.model.layers.{i}.{group}.{t}.lora_{key}.weight"
            w = tensors.get(name)
            if w is None:
                w = tensors.get(name.replace(f"lora_{key}.weight", f"lora_{key}.default.weight"))
            if w is None:
                raise AdapterError(f"{d}: missing tensor {name}")
            shape = (lc.rank, d_in) if key == "A" else (d_out, lc.rank)
            if w.shape != shape:
                raise AdapterError(f"{d}: {name} has shape {w.shape}, expected {shape}")
            layers.append(np.asarray(w, np.float32).T)
        var.set_value(jnp.asarray(np.stack(layers), dtype=var.get_value().dtype))
    nnx.update(model, state)
    return state


def export_critic(critic_params, path: str | os.PathLike) -> Path:
    """Write the critic's parameters (a dict pytree) to one safetensors file.

    Tensor names are the dict paths joined by "." (e.g. ``w0``); matrices keep our orientation
    [in, out] (``x @ w``), which the file's metadata records, since the critic has no PyTorch
    counterpart to match. The metadata is one entry: safetensors writes several in a per-process
    random order, and the same weights must give the same bytes.
    """
    from safetensors.numpy import save_file

    flat = _flatten(critic_params)
    tensors = {".".join(p): np.ascontiguousarray(v, dtype=np.float32) for p, v in flat.items()}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda p: save_file(tensors, p, metadata={"layout": "x @ w ([in, out])"}))
    return out
