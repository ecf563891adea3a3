"""Sentence embeddings in JAX: all-MiniLM-L6-v2, or any sentence-transformers BERT directory.

RLAdapter (AdaRefiner ``utils.py``) embeds text twice: the instruction that conditions the
agent's policy, and, for its comprehension score, the agent's recent actions and its instruction,
compared by cosine. It uses paraphrase-MiniLM-L6-v2; all-MiniLM-L6-v2 has the same architecture
and is the one published on the registry. ``SentenceEncoder.encode`` computes what
sentence-transformers computes for such a model: lower-case WordPiece tokens between [CLS] and
[SEP], truncated to ``max_seq_length`` tokens (256 for all-MiniLM-L6-v2, special tokens
included), the BERT encoder (``model/bert.py``), the mean of the token states over the real
tokens (``1_Pooling``) and L2 normalisation (its ``2_Normalize`` module). Rows are unit vectors,
so the dot product of two rows is their cosine.

The ``tokenizer.json`` shipped with all-MiniLM-L6-v2 pads every text to 128 tokens and truncates
at 128. Padding is turned off here and truncation set to ``max_seq_length``: texts are padded
below, and the pads are masked out of attention and of the mean (unmasked pads pull every pair
of sentences to a cosine of about 0.8). Texts are sorted by length and batched; each batch is
padded to a bucket length (``LENGTH_BUCKETS``, capped at ``max_seq_length``) and to a
power-of-two number of rows, so jit compiles a handful of shapes whatever the texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from twosome_jax.model.bert import BertConfig, from_hf_tensors
from twosome_jax.model.loading import ModelLoadError, SafetensorsFile

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")


def _pooled(graphdef, state, input_ids, mask):
    """Mean of the token states over real tokens, L2-normalised (sentence-transformers' eps)."""
    h = nnx.merge(graphdef, state)(input_ids, mask)
    m = mask[..., None].astype(jnp.float32)
    mean = (h * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


_pooled_jit = jax.jit(_pooled, static_argnums=0)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read JSON ({type(e).__name__}: {e})") from None


class SentenceEncoder:
    """``SentenceEncoder.load().encode(texts)`` -> float32 [len(texts), dim], unit rows."""

    def __init__(self, model, tokenizer, max_seq_length: int, batch_size: int = 64):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.graphdef, self.state = nnx.split(model)
        self.dim = model.config.hidden_size
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.buckets = tuple(sorted({b for b in LENGTH_BUCKETS if b < max_seq_length} | {max_seq_length}))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, path=None, *, batch_size: int = 64) -> "SentenceEncoder":
        """From a sentence-transformers BERT directory (``config.json``, ``model.safetensors``,
        ``tokenizer.json``; ``sentence_bert_config.json`` and ``1_Pooling/config.json`` where
        present), by default all-MiniLM-L6-v2 as fetched into the cache by ``hub``. Raises
        ``ModelLoadError`` (one line) for a missing, corrupt or unsupported directory."""
        from tokenizers import Tokenizer

        if path is None:
            from twosome_jax.hub import all_minilm_l6_v2_dir

            path = all_minilm_l6_v2_dir()
        directory = Path(path)
        missing = [name for name in REQUIRED if not (directory / name).is_file()]
        if missing:
            raise ModelLoadError(f"{directory}: not a sentence encoder directory (no {', '.join(missing)}); "
                                 f"expected {', '.join(REQUIRED)}")
        try:
            config = BertConfig.from_hf_dict(_read_json(directory / "config.json"))
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{directory / 'config.json'}: unusable BERT config ({type(e).__name__}: {e})") from None
        pooling = directory / "1_Pooling" / "config.json"
        if pooling.is_file():
            modes = sorted(k for k, v in _read_json(pooling).items() if k.startswith("pooling_mode") and v)
            if modes != ["pooling_mode_mean_tokens"]:
                raise ModelLoadError(f"{pooling}: pooling {modes} is not supported; only pooling_mode_mean_tokens")
        sbert = directory / "sentence_bert_config.json"
        max_len = _read_json(sbert).get("max_seq_length") if sbert.is_file() else None
        max_len = config.max_position_embeddings if max_len is None else max_len
        if not isinstance(max_len, int) or not 2 <= max_len <= config.max_position_embeddings:
            raise ModelLoadError(f"{sbert}: max_seq_length {max_len!r} must be an int in "
                                 f"[2, max_position_embeddings={config.max_position_embeddings}]")
        weights = SafetensorsFile(directory / "model.safetensors")

        def get(name):
            if name not in weights.entries:
                raise ModelLoadError(f"{directory / 'model.safetensors'}: no tensor {name!r} (a BertModel checkpoint?)")
            return weights.get(name)

        try:
            model = from_hf_tensors(config, get)
        except ValueError as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"{directory / 'model.safetensors'}: {e}") from None
        try:
            tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        except Exception as e:  # the tokenizers library raises plain Exceptions
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise ModelLoadError(f"{directory / 'tokenizer.json'}: cannot load tokenizer ({first})") from None
        return cls(model, tokenizer, max_len, batch_size)

    def with_random_linears(self, key) -> "SentenceEncoder":
        """A copy whose every linear layer (query, key, value, attention output, intermediate,
        output; each layer's matrix drawn on its own) is orthogonal with gain sqrt 2 and zero
        bias, the embeddings and LayerNorms kept. This is what AdaRefiner's policy holds
        (RLAdapter quirk Q9): its MiniLM is a sub-module of the stable-baselines3 feature
        extractor, whose orthogonal init (``features_extractor.apply(init_weights)``) reaches
        every ``nn.Linear`` inside the BERT, and encoding without gradients keeps it so."""
        from twosome_jax.model.bert import Dense

        model = nnx.clone(nnx.merge(self.graphdef, self.state))  # merge shares this encoder's variables
        orthogonal = jax.nn.initializers.orthogonal(scale=np.sqrt(2.0))
        for i, (_, module) in enumerate(nnx.iter_modules(model)):
            if isinstance(module, Dense):
                shape = module.kernel[...].shape
                keys = jax.random.split(jax.random.fold_in(key, i), int(np.prod(shape[:-2])))
                mats = jax.vmap(lambda k: orthogonal(k, shape[-2:], jnp.float32))(keys)
                module.kernel[...] = mats.reshape(shape)
                module.bias[...] = jnp.zeros_like(module.bias[...])
        return SentenceEncoder(model, self.tokenizer, self.max_seq_length, self.batch_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, float32 [len(texts), dim], row i for texts[i]."""
        if isinstance(texts, str):
            raise ValueError(f"texts must be a list of strings, got one string {texts[:40]!r}")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] is {type(text).__name__} {text!r:.40}; texts must be strings")
        out = np.zeros((len(texts), self.dim), np.float32)
        ids = [e.ids for e in self.tokenizer.encode_batch(texts)]
        order = np.argsort([len(x) for x in ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            length = next(b for b in self.buckets if b >= max(len(ids[i]) for i in rows))
            n = min(self.batch_size, 1 << (len(rows) - 1).bit_length())
            batch, mask = np.zeros((n, length), np.int32), np.zeros((n, length), bool)
            for r, i in enumerate(rows):
                batch[r, :len(ids[i])], mask[r, :len(ids[i])] = ids[i], True
            out[rows] = np.asarray(_pooled_jit(self.graphdef, self.state, batch, mask))[:len(rows)]
        return out
