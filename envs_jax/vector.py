"""Stepping many environments at once, a cache-sized block at a time.

``jax.vmap`` over thousands of environments turns every operation of a step into one pass over
arrays of that length; an Overcooked macro step is a loop of primitive steps, each dozens of
such passes, so past a few thousand environments the loop's working set leaves the CPU caches
and throughput falls (benchmarks/README.md). :func:`vmap_blocked` computes the same batched
function ``block_size`` rows at a time (``lax.map`` with ``batch_size``), which keeps each
block's working set in cache. :func:`map_blocks` does the same for a function of whole
batches, such as ``Overcooked.step_batch``. On accelerators one call over the whole batch is
the right choice.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

# 1024: the fastest of the block sizes 256-2048 tried for Overcooked on a 2-core AMD EPYC when
# this was added (0986b69, 2026-11-21; no result file records that sweep). The -N8192-blocked
# rows of benchmarks/test_env.py use it; `python benchmarks/env_stages.py --block-size N` times
# another size.
BLOCK_SIZE = 1024


def vmap_blocked(fn: Callable, in_axes: int | None | Sequence[int | None] = 0, block_size: int = BLOCK_SIZE):
    """``jax.vmap(fn, in_axes)`` evaluated ``block_size`` rows at a time; same results.

    ``in_axes`` entries are 0 (mapped over the leading axis) or None (broadcast), as for the
    ``env.step(key, state, action, params)`` call with ``in_axes=(0, 0, 0, None)``."""
    return map_blocks(jax.vmap(fn, in_axes=in_axes), in_axes, block_size)


def map_blocks(batched_fn: Callable, in_axes: int | None | Sequence[int | None] = 0, block_size: int = BLOCK_SIZE):
    """A function of whole batches (such as ``env.step_batch``) applied ``block_size`` rows at a
    time (``lax.map`` over the blocks, then the remainder); same results when rows are
    independent."""
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")

    def mapped(*args: Any):
        axes = tuple(in_axes) if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
        if len(axes) != len(args) or any(a not in (0, None) for a in axes):
            raise ValueError(f"in_axes must be 0 or None per argument, got {in_axes!r} for {len(args)} arguments")
        mapped_at = [i for i, a in enumerate(axes) if a == 0]
        n = jax.tree.leaves(args[mapped_at[0]])[0].shape[0]
        if n <= block_size:
            return batched_fn(*args)
        blocks, rest = divmod(n, block_size)

        def call(rows):
            full = list(args)
            for i in mapped_at:
                full[i] = jax.tree.map(rows, args[i])
            return full

        def block(i):
            return batched_fn(*call(lambda x: jax.lax.dynamic_slice_in_dim(x, i * block_size, block_size)))

        out = jax.lax.map(block, jnp.arange(blocks))
        out = jax.tree.map(lambda y: y.reshape((blocks * block_size,) + y.shape[2:]), out)
        if rest:
            tail = batched_fn(*call(lambda x: x[blocks * block_size:]))
            out = jax.tree.map(lambda y, t: jnp.concatenate([y, t]), out, tail)
        return out

    return mapped
