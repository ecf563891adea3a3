"""Tokenizers: the tiny test tokenizer, and GGUF tokenizers with a conversion cache.

``tiny_tokenizer()`` is a byte-level BPE trained in-process on a fixed English corpus, so tests
need no download and every run builds the same vocabulary. It adds a BOS like LLaMA's
tokenizer (SmolLM2's adds none), so the text code is tested under both conventions. Its corpus
deliberately covers only some of the environments' words: the rest split into several pieces,
which is what makes it a useful stress test of token-level bookkeeping.

Building a tokenizer from a GGUF with transformers takes ~10 s (it converts the embedded
vocabulary); ``load_gguf_tokenizer`` saves the converted tokenizer once in the cache and
reloads it from there in well under a second.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

TINY_VOCAB_SIZE = 512
TINY_PAD, TINY_BOS, TINY_EOS = "<pad>", "<s>", "</s>"

_TINY_CORPUS = """
There is a fixed table in the room. You notice a cup on the table. Currently you are holding
nothing. The cook walks to the kitchen and picks up the knife. She cuts the bread on the board,
puts it in the bowl and serves the dish. What should you do first? You should first look around.
The quick brown fox jumps over the lazy dog. A small model reads the prompt and writes an answer.
Tomatoes are red, lettuce is green, onions make you cry. Take the plate, wash the plate, dry it.
Walk to the door, open the door, close the door, turn on the light, sit on the sofa, watch TV.
Numbers like 1, 2, 3, 10 and 200 appear in logs. Reinforcement learning trains a policy from
rewards; the critic predicts the value of a state. In front of the board there is a chair.
""" * 4


@functools.lru_cache(maxsize=1)
def _tiny_tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=[TINY_PAD, TINY_BOS, TINY_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS.split("\n"), trainer=trainer)
    bos_id = tokenizer.token_to_id(TINY_BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{TINY_BOS} $A", pair=f"{TINY_BOS} $A {TINY_BOS} $B", special_tokens=[(TINY_BOS, bos_id)]
    )
    return tokenizer.to_str()


def tiny_tokenizer():
    """A deterministic 512-token byte-level BPE tokenizer that prepends ``<s>``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json()),
        bos_token=TINY_BOS, eos_token=TINY_EOS, pad_token=TINY_PAD,
    )


def _gguf_cache_key(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def load_gguf_tokenizer(path: str | os.PathLike):
    """The tokenizer embedded in a GGUF file, converted by transformers once and then cached."""
    from transformers import AutoTokenizer

    from twosome_jax.hub import cache_dir

    path = Path(path)
    cached = cache_dir() / "tokenizers" / _gguf_cache_key(path)
    if (cached / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(cached, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cached.parent))
    tokenizer.save_pretrained(staging)
    try:
        os.rename(staging, cached)  # atomic: a killed save never leaves half a tokenizer behind
    except OSError:
        shutil.rmtree(staging)  # another process won the race; its copy is identical
    return tokenizer
