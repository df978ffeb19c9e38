"""Atomic outputs: write into a temporary sibling directory, rename when complete.

How it works
------------
``with atomic_dir(out) as tmp:`` yields a fresh directory beside ``out`` (same filesystem, so the final
``os.replace`` is a rename). When the block finishes, ``out`` is replaced by ``tmp`` as a whole; when it
raises, ``tmp`` is deleted and ``out`` is left exactly as it was. A reader therefore sees either the old
complete output or the new complete output, never a half-written one: an existing ``out`` is first renamed
aside, the new tree renamed in, and only then is the old one deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(out_dir: str | Path) -> Iterator[Path]:
    """A temporary directory that replaces ``out_dir`` only if the block completes."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        yield tmp
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, target: Path) -> None:
    """Put ``new`` at ``target`` by renames; an old ``target`` is removed only afterwards."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(root: str | Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by POSIX path relative to it, sorted."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
