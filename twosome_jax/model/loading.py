"""Resolve a model spec to (config, model, tokenizer).

Accepted specs:
  * ``smollm2-135m-instruct``: the embedded default (a Q4_1 GGUF fetched once by ``hub.py``);
  * ``tiny-random``: ``LlamaConfig.tiny()`` + ``tiny_tokenizer()``, deterministic init;
  * a Hugging Face checkpoint directory: config.json + model.safetensors (or shards with
    model.safetensors.index.json) + tokenizer files (loaded offline by AutoTokenizer);
  * a path to a ``.gguf`` file of the llama architecture (dequantized with ``gguf``; q/k rows
    un-permuted from llama.cpp's rotary layout back to the HF layout).

Every failure to resolve or read a spec raises ``ModelLoadError`` with a one-line message.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .config import LlamaConfig, default_dtype
from .llama import Llama, LoRAConfig, LoRAParam

BUILTIN_NAMES = ("smollm2-135m-instruct", "tiny-random")
ACCEPTED = (
    "accepted: 'smollm2-135m-instruct', 'tiny-random', a Hugging Face checkpoint directory "
    "(config.json + *.safetensors + tokenizer files), or a path to a llama .gguf file"
)


class ModelLoadError(ValueError):
    """A model spec could not be resolved or read. The message is a single line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# --------------------------------------------------------------------------------- safetensors
_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def _st_dtype(name: str, path: Path):
    if name == "BF16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    if name not in _ST_DTYPES:
        raise ModelLoadError(f"{path}: unsupported safetensors dtype {name!r}")
    return np.dtype(_ST_DTYPES[name])


class SafetensorsFile:
    """Minimal memory-mapped safetensors reader (handles bfloat16 via ml_dtypes)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ModelLoadError(f"{self.path}: truncated or corrupt safetensors file (too short)")
                (n,) = struct.unpack("<Q", head)
                if n > size - 8 or n > 100_000_000:
                    raise ModelLoadError(
                        f"{self.path}: truncated or corrupt safetensors file (header of {n} bytes, file has {size})")
                header = json.loads(f.read(n))
        except ModelLoadError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{self.path}: cannot read safetensors file ({type(e).__name__}: {e})")
        header.pop("__metadata__", None)
        self.offset = 8 + n
        self.entries = header
        end = max((v["data_offsets"][1] for v in header.values()), default=0)
        if self.offset + end > size:
            raise ModelLoadError(
                f"{self.path}: truncated safetensors file (needs {self.offset + end} bytes, has {size})")
        self._mm = np.memmap(self.path, dtype=np.uint8, mode="r") if size else None

    def keys(self):
        return self.entries.keys()

    def get(self, name: str) -> np.ndarray:
        e = self.entries[name]
        dt = _st_dtype(e["dtype"], self.path)
        b, t = e["data_offsets"]
        raw = self._mm[self.offset + b:self.offset + t]
        return raw.view(dt).reshape(e["shape"])


def _hf_tensor_source(directory: Path) -> tuple[Callable[[str], np.ndarray], set]:
    index = directory / "model.safetensors.index.json"
    single = directory / "model.safetensors"
    files: dict[str, SafetensorsFile] = {}
    where: dict[str, str] = {}
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise ModelLoadError(f"{index}: corrupt index file ({type(e).__name__}: {e})")
        for name, fname in weight_map.items():
            where[name] = fname
        for fname in sorted(set(where.values())):
            p = directory / fname
            if not p.exists():
                raise ModelLoadError(f"{directory}: shard {fname} listed in the index is missing")
            files[fname] = SafetensorsFile(p)
    elif single.exists():
        files["model.safetensors"] = SafetensorsFile(single)
        where = {k: "model.safetensors" for k in files["model.safetensors"].keys()}
    else:
        shards = sorted(directory.glob("*.safetensors"))
        if not shards:
            raise ModelLoadError(
                f"{directory}: no model.safetensors, model.safetensors.index.json or *.safetensors found")
        for p in shards:
            files[p.name] = SafetensorsFile(p)
            where.update({k: p.name for k in files[p.name].keys()})

    def get(name: str) -> np.ndarray:
        try:
            return files[where[name]].get(name)
        except KeyError:
            raise ModelLoadError(f"{directory}: checkpoint has no tensor {name!r}")

    return get, set(where)


# --------------------------------------------------------------------------------- assembly
def _layer_names(i: int) -> dict[tuple[str, ...], tuple[str, bool]]:
    """our flat path -> (HF tensor name, transpose?) for layer i."""
    p = f"model.layers.{i}."
    d = {}
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
        d[("layers", "self_attn", proj, "kernel")] = (p + f"self_attn.{proj}.weight", True)
    for proj in ("gate_proj", "up_proj", "down_proj"):
        d[("layers", "mlp", proj, "kernel")] = (p + f"mlp.{proj}.weight", True)
    d[("layers", "input_layernorm", "scale")] = (p + "input_layernorm.weight", False)
    d[("layers", "post_attention_layernorm", "scale")] = (p + "post_attention_layernorm.weight", False)
    return d


def assemble_base_state(config: LlamaConfig, get: Callable[[str], np.ndarray], where: str) -> dict:
    """Build a pure dict of the frozen base weights from HF-named [out, in] tensors."""
    abstract = nnx.eval_shape(lambda: Llama(config, None, rngs=nnx.Rngs(0)))
    base = nnx.state(abstract, nnx.Param)
    flat = {tuple(k): v for k, v in nnx.to_flat_state(base)}
    pdt = config.param_dtype
    out = {}
    L = config.num_hidden_layers

    def check(arr, shape, name):
        if tuple(arr.shape) != tuple(shape):
            raise ModelLoadError(
                f"{where}: tensor {name} has shape {tuple(arr.shape)}, expected {tuple(shape)} for this config")

    for path, var in flat.items():
        shape = var.get_value().shape
        if path[0] == "layers":
            stack = np.empty(shape, np.dtype(pdt))  # target dtype: no float32 copy of a 7B stack
            for i in range(L):
                name, transpose = _layer_names(i)[path]
                a = np.asarray(get(name), dtype=np.float32)
                a = a.T if transpose else a
                check(a, shape[1:], name)
                stack[i] = a
            out[path] = jnp.asarray(stack, dtype=pdt)
            del stack
        elif path == ("embed_tokens", "embedding"):
            a = np.asarray(get("model.embed_tokens.weight"), np.float32)
            check(a, shape, "model.embed_tokens.weight")
            out[path] = jnp.asarray(a, dtype=pdt)
        elif path == ("norm", "scale"):
            a = np.asarray(get("model.norm.weight"), np.float32)
            check(a, shape, "model.norm.weight")
            out[path] = jnp.asarray(a, dtype=pdt)
        elif path == ("lm_head_proj", "kernel"):
            a = np.asarray(get("lm_head.weight"), np.float32).T
            check(a, shape, "lm_head.weight")
            out[path] = jnp.asarray(a, dtype=pdt)
        else:  # pragma: no cover - model structure and loader out of sync
            raise ModelLoadError(f"{where}: no source for parameter {'.'.join(path)}")
    return out


def _unflatten(flat: dict) -> dict:
    nested: dict = {}
    for path, v in flat.items():
        d = nested
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = v
    return nested


def _init_lora_state(config: LlamaConfig, lora: LoRAConfig, seed: int):
    @jax.jit
    def init():
        m = Llama(config, lora, rngs=nnx.Rngs(seed))
        return nnx.state(m, LoRAParam)  # base init is dead code, XLA drops it

    return init()


def build_model(config: LlamaConfig, base_flat: dict, lora: LoRAConfig | None = None,
                seed: int = 0) -> Llama:
    """A Llama with the given base weights (flat {path: array}) and freshly initialised LoRA."""
    abstract = nnx.eval_shape(lambda: Llama(config, lora, rngs=nnx.Rngs(seed)))
    graphdef, base, lora_state = nnx.split(abstract, nnx.Param, LoRAParam)
    nnx.replace_by_pure_dict(base, _unflatten(base_flat))
    if lora is not None:
        lora_state = _init_lora_state(config, lora, seed)
    return nnx.merge(graphdef, base, lora_state)


# --------------------------------------------------------------------------------- weight cache
# Loading the same checkpoint again in one process (tests, evaluation after training) reuses the
# converted base weights: jax arrays are immutable, so models built from them cannot affect each
# other. Only checkpoints up to _CACHE_MAX_BYTES are kept, at most _CACHE_ENTRIES of them.
_CACHE: "OrderedDict[tuple, tuple[LlamaConfig, dict]]" = OrderedDict()
_CACHE_ENTRIES = 2
_CACHE_MAX_BYTES = 4 << 30


def clear_weight_cache() -> None:
    """Forget base weights kept from earlier ``load_model`` calls in this process."""
    _CACHE.clear()


def _files_key(paths) -> tuple:
    key = []
    for p in paths:
        try:
            st = Path(p).stat()
        except OSError:
            return (object(),)  # never matches: let the loader raise its own error
        key.append((str(Path(p).resolve()), st.st_size, st.st_mtime_ns))
    return tuple(key)


def _cached_base(key, make):
    hit = _CACHE.get(key)
    if hit is not None and not any(getattr(a, "is_deleted", lambda: False)() for a in hit[1].values()):
        _CACHE.move_to_end(key)
        return hit
    value = make()
    if sum(getattr(a, "nbytes", 0) for a in value[1].values()) <= _CACHE_MAX_BYTES:
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return value


# --------------------------------------------------------------------------------- HF directory
def load_hf_config(directory: Path, **overrides) -> LlamaConfig:
    cfg_path = directory / "config.json"
    if not cfg_path.exists():
        raise ModelLoadError(f"{directory}: not a Hugging Face checkpoint directory (no config.json); {ACCEPTED}")
    try:
        d = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise ModelLoadError(f"{cfg_path}: invalid JSON ({e})")
    mt = d.get("model_type", "llama")
    if mt != "llama":
        raise ModelLoadError(f"{cfg_path}: model_type {mt!r} is not supported; only 'llama'")
    try:
        return LlamaConfig.from_hf_dict(d, **overrides)
    except (KeyError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{cfg_path}: unusable llama config ({type(e).__name__}: {e})")


def load_hf_dir(directory, *, dtype=None, lora=None, seed=0, remat=False, tokenizer=True):
    directory = Path(directory)
    dt = jnp.dtype(dtype) if dtype is not None else default_dtype()
    files = [directory / "config.json", *sorted(directory.glob("*.safetensors*"))]

    def make():
        config = load_hf_config(directory, dtype=dt, param_dtype=dt)
        get, _ = _hf_tensor_source(directory)
        return config, assemble_base_state(config, get, str(directory))

    config, base = _cached_base(("hf", _files_key(files), dt.name), make)
    config = config.replace(remat=remat)
    model = build_model(config, base, lora, seed)
    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as e:  # transformers raises many types here
            raise ModelLoadError(
                f"{directory}: cannot load its tokenizer offline ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return config, model, tok


# --------------------------------------------------------------------------------- GGUF
def _gguf_field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:  # pragma: no cover - older gguf without contents()
        v = f.parts[f.data[0]]
        return v.tobytes().decode() if v.dtype == np.uint8 else v.item()


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's q/k row permutation (rotary interleaving) -> HF rotate_half layout."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}


def read_gguf(path, *, dtype=None, remat=False):
    """-> (config, get(hf_name) -> float32 ndarray [out, in])."""
    import gguf
    from gguf.quants import dequantize

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable GGUF file, truncated or corrupt ({type(e).__name__}: {e})")
    arch = _gguf_field(reader, "general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"{path}: GGUF architecture is {arch!r}; only 'llama' is supported")
    try:
        g = lambda k, d=None: _gguf_field(reader, f"llama.{k}", d)
        n_head = int(g("attention.head_count"))
        n_kv = int(g("attention.head_count_kv", n_head))
        hidden = int(g("embedding_length"))
        tensors = {t.name: t for t in reader.tensors}
        n_tokens = len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields else None
        vocab = int(g("vocab_size", 0) or n_tokens or tensors["token_embd.weight"].shape[-1])
        head_dim = int(g("attention.key_length", 0) or hidden // n_head)
        rope_scaling = None
        st = _gguf_field(reader, "llama.rope.scaling.type")
        if st not in (None, "none"):
            if st == "linear":
                rope_scaling = {"rope_type": "linear", "factor": float(g("rope.scaling.factor"))}
            else:
                raise ModelLoadError(f"{path}: rope scaling type {st!r} in GGUF is not supported")
        if "rope_freqs.weight" in tensors:
            raise ModelLoadError(f"{path}: GGUF with rope_freqs (llama3 rope scaling) is not supported; "
                                 "use the Hugging Face checkpoint directory instead")
        dt = jnp.dtype(dtype) if dtype is not None else default_dtype()
        bos = _gguf_field(reader, "tokenizer.ggml.bos_token_id")
        eos = _gguf_field(reader, "tokenizer.ggml.eos_token_id")
        pad = _gguf_field(reader, "tokenizer.ggml.padding_token_id")
        config = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=int(g("feed_forward_length")),
            num_hidden_layers=int(g("block_count")),
            num_attention_heads=n_head,
            num_key_value_heads=n_kv,
            head_dim=head_dim,
            rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(g("rope.freq_base", 10000.0)),
            rope_scaling=rope_scaling,
            max_position_embeddings=int(g("context_length", 2048)),
            tie_word_embeddings="output.weight" not in tensors,
            bos_token_id=None if bos is None else int(bos),
            eos_token_id=None if eos is None else int(eos),
            pad_token_id=None if pad is None else int(pad),
            dtype=dt, param_dtype=dt, remat=remat,
        )
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"{path}: incomplete llama metadata in GGUF ({type(e).__name__}: {e})")

    hf_to_gguf = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                  "lm_head.weight": "output.weight"}
    pat = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight$")

    def get(name: str) -> np.ndarray:
        m = pat.match(name)
        if m:
            i, part = m.groups()
            inv = {v: k for k, v in _GGUF_TO_HF.items()}
            gname = f"blk.{i}.{inv[part]}.weight"
        else:
            gname = hf_to_gguf[name]
        t = tensors.get(gname)
        if t is None:
            raise ModelLoadError(f"{path}: GGUF has no tensor {gname!r}")
        try:
            w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        except Exception as e:
            raise ModelLoadError(f"{path}: cannot dequantize {gname} ({type(e).__name__}: {e})")
        shape = tuple(int(s) for s in reversed(list(t.shape)))
        if w.size != int(np.prod(shape)):
            raise ModelLoadError(f"{path}: tensor {gname} is truncated or corrupt")
        w = w.reshape(shape)
        if gname.endswith("attn_q.weight"):
            w = _unpermute(w, n_head)
        elif gname.endswith("attn_k.weight"):
            w = _unpermute(w, n_kv)
        return w

    return config, get


def load_gguf(path, *, dtype=None, lora=None, seed=0, remat=False, tokenizer=True):
    path = Path(path)
    dt = jnp.dtype(dtype) if dtype is not None else default_dtype()

    def make():
        config, get = read_gguf(path, dtype=dt)
        return config, assemble_base_state(config, get, str(path))

    config, base = _cached_base(("gguf", _files_key([path]), dt.name), make)
    config = config.replace(remat=remat)
    model = build_model(config, base, lora, seed)
    tok = None
    if tokenizer:
        from twosome_jax.tokenizer import load_gguf_tokenizer

        try:
            tok = load_gguf_tokenizer(path)
        except Exception as e:
            raise ModelLoadError(f"{path}: cannot build its tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    return config, model, tok


# --------------------------------------------------------------------------------- tiny-random
def load_tiny_random(*, dtype=None, lora=None, seed=0, remat=False, tokenizer=True, **overrides):
    from twosome_jax.tokenizer import tiny_tokenizer

    tok = tiny_tokenizer()
    dt = jnp.dtype(dtype) if dtype is not None else default_dtype()
    config = LlamaConfig.tiny(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, dtype=dt, param_dtype=dt, remat=remat, **overrides)
    model = Llama(config, lora, rngs=nnx.Rngs(seed))
    return config, model, (tok if tokenizer else None)


# --------------------------------------------------------------------------------- resolver
def resolve_spec(spec) -> tuple[str, str | Path]:
    """-> (kind, location) with kind in {'smollm2', 'tiny-random', 'hf-dir', 'gguf'}."""
    s = str(spec)
    if s in ("smollm2-135m-instruct", "smollm2", "default"):
        return "smollm2", s
    if s == "tiny-random":
        return "tiny-random", s
    p = Path(os.path.expanduser(s))
    if p.is_dir():
        return "hf-dir", p
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return "gguf", p
        with open(p, "rb") as f:
            if f.read(4) == b"GGUF":
                return "gguf", p
        raise ModelLoadError(f"model spec {s!r} is a file but not a .gguf file; {ACCEPTED}")
    if p.suffix.lower() == ".gguf" or os.sep in s or s.startswith("."):
        raise ModelLoadError(f"model spec {s!r}: no such file or directory; {ACCEPTED}")
    raise ModelLoadError(f"model spec {s!r} is not a known model name or an existing path; {ACCEPTED}")


def load_model(spec, *, dtype=None, lora: LoRAConfig | None = None, seed: int = 0,
               remat: bool = False, tokenizer: bool = True):
    """Resolve ``spec`` and return ``(config, model, tokenizer)``.

    dtype: compute and frozen-weight dtype (default float32 on CPU, bfloat16 elsewhere); LoRA
    params, logits and log-softmax are always float32. lora: LoRAConfig to attach fresh adapters
    (A kaiming-uniform, B zero, from ``seed``). Raises ModelLoadError with a one-line message.
    """
    kind, loc = resolve_spec(spec)
    kw = dict(dtype=dtype, lora=lora, seed=seed, remat=remat, tokenizer=tokenizer)
    if kind == "tiny-random":
        return load_tiny_random(**kw)
    if kind == "smollm2":
        from twosome_jax.hub import FetchError, smollm2_gguf_path

        try:
            path = smollm2_gguf_path()
        except FetchError as e:
            raise ModelLoadError(f"cannot fetch smollm2-135m-instruct: {e}")
        return load_gguf(path, **kw)
    if kind == "hf-dir":
        return load_hf_dir(loc, **kw)
    return load_gguf(loc, **kw)


# --------------------------------------------------------------------------------- export
def hf_state_dict(model: Llama) -> dict[str, np.ndarray]:
    """The frozen base weights under Hugging Face names, torch layout [out, in], float32."""
    config = model.config
    flat = {tuple(p): np.asarray(v.get_value(), np.float32)
            for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    out = {"model.embed_tokens.weight": flat[("embed_tokens", "embedding")],
           "model.norm.weight": flat[("norm", "scale")]}
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = np.ascontiguousarray(flat[("lm_head_proj", "kernel")].T)
    for i in range(config.num_hidden_layers):
        for path, (name, transpose) in _layer_names(i).items():
            a = flat[path][i]
            out[name] = np.ascontiguousarray(a.T if transpose else a)
    return out


def save_hf_checkpoint(model: Llama, directory, tokenizer=None) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) loadable by ``load_model`` and
    by transformers' LlamaForCausalLM. LoRA adapters are not included."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(model.config.to_hf_dict(), indent=2))
    save_file(hf_state_dict(model), str(directory / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return directory
