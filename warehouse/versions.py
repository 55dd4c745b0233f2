"""What a derived row depends on besides its input data: the code that computed it."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

CODE_PACKAGES = ("schemas", "transforms")
"""Packages whose source decides table contents: changing any of their files reprocesses every study."""


@cache
def code_fingerprint() -> str:
    """Hash of the source of :data:`CODE_PACKAGES` (so a code change without a version bump still reprocesses)."""
    digest = hashlib.blake2b(digest_size=16)
    for package in CODE_PACKAGES:
        root = resources.files(package)
        for path in sorted(_python_files(root), key=str):
            digest.update(str(path).split(package, 1)[-1].encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _python_files(folder):  # type: ignore[no-untyped-def]
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name != "__pycache__":
            yield from _python_files(entry)
        elif entry.name.endswith(".py"):
            yield entry
