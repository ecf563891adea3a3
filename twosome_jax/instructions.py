"""Instruction texts for the guided agent, and their sentence embeddings as one table.

RLAdapter's agent is conditioned on the embedding of its current instruction, a sentence naming
sub-goals from a fixed list (AdaRefiner ``utils.py``: the decision LLM "suggests 3 sub-goals ...
in one sentence"). When the instructions can be enumerated, as for the random-sub-goal control
(every set of 3 of the 31 sub-goals: 4,495 sentences), they are embedded once on the host into a
table, and the compiled rollout only gathers rows by index.

A sentence is the chosen sub-goals in list order, joined by ``", "``, with a full stop:
``"eat plant, attack zombie, chop tree."``. Embedding 4,495 sentences takes about a minute on two
CPU cores, so the table is cached (``hub.cache_dir() / instruction-tables``), keyed by the
sha256 of the encoder's name and the texts, and written atomically.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

ENCODER_NAME = "all-MiniLM-L6-v2"  # the default of sentence_encoder.SentenceEncoder.load()


def subgoal_sentences(subgoals: Sequence[str], k: int) -> list[str]:
    """One sentence per ``k``-subset of ``subgoals`` (``itertools.combinations`` order)."""
    if not 1 <= k <= len(subgoals):
        raise ValueError(f"subgoals_per_instruction={k} is invalid; accepted: 1..{len(subgoals)} "
                         f"(the environment has {len(subgoals)} sub-goals)")
    return [", ".join(subgoals[i] for i in c) + "." for c in itertools.combinations(range(len(subgoals)), k)]


def embedding_table(texts: Sequence[str], encoder=None) -> np.ndarray:
    """float32 [len(texts), dim]: the unit-norm sentence embedding of each text, by default with
    all-MiniLM-L6-v2 (``SentenceEncoder.load()``), read from the cache when it was computed
    before. A given ``encoder`` (anything with ``encode(list[str])``) is used as is, uncached."""
    texts = list(texts)
    if encoder is not None:
        return np.asarray(encoder.encode(texts), np.float32)
    from twosome_jax.atomic import write_atomic
    from twosome_jax.hub import cache_dir

    digest = hashlib.sha256("\n".join([ENCODER_NAME, *texts]).encode()).hexdigest()
    path = Path(cache_dir()) / "instruction-tables" / f"{digest}.npy"
    if path.is_file():
        table = np.load(path)
        if table.shape[0] == len(texts):
            return table
    from twosome_jax.sentence_encoder import SentenceEncoder

    table = np.asarray(SentenceEncoder.load().encode(texts), np.float32)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.save(f, table)

    write_atomic(path, save)
    return table


def policy_table(texts: Sequence[str], policy_encoder: str, seed: int, encoder=None) -> np.ndarray:
    """The table the policy reads: ``embedding_table(texts, encoder)`` with ``policy_encoder:
    pretrained``; with ``random_linears`` the embeddings of the encoder (default
    all-MiniLM-L6-v2) with its linear layers re-drawn from ``seed``
    (``SentenceEncoder.with_random_linears``, RLAdapter quirk Q9), uncached. One table serves
    every seed of a run, so its seeds share one random encoder, where the release draws one per
    seed."""
    if policy_encoder == "pretrained":
        return embedding_table(texts, encoder)
    if policy_encoder != "random_linears":
        raise ValueError(f"policy_encoder {policy_encoder!r} is invalid; accepted: pretrained, random_linears")
    import jax

    from twosome_jax.sentence_encoder import SentenceEncoder

    base = SentenceEncoder.load() if encoder is None else encoder
    if not hasattr(base, "with_random_linears"):
        raise ValueError(f"policy_encoder random_linears needs a SentenceEncoder, got a {type(base).__name__}")
    return embedding_table(texts, base.with_random_linears(jax.random.PRNGKey(seed)))
