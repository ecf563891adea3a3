"""Initialising several independent seeds at once.

``init_seeds(init, keys)`` is ``jax.vmap(init)(keys)`` computed one seed after another
(``lax.map``). The result is the same; the reason is XLA's CPU runtime. A vmapped orthogonal
initialisation becomes one *batched* QR custom call, and jaxlib's batched LAPACK kernel
(``QrFactorization`` through ``ParallelBatchMap``, jaxlib 0.10.2) splits the batch over the
intra-op thread pool and waits for it. When the call itself runs on one of that pool's threads
with the others busy, nothing is left to run the pieces and the program never finishes: with two
cores a second ``jit(vmap(agent.init))`` call hung in about half the tries, at 0 % CPU. One QR
per seed never enters that path. Initialisation runs once per run, so the loop costs nothing
that matters.
"""

from __future__ import annotations

import jax


def init_seeds(init, keys):
    """``init(key)`` for every key of ``keys`` [K, ...], stacked on a leading seed axis."""
    return jax.lax.map(init, keys)
