"""What a derived row depends on besides its input data: the code that computed it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

CODE_PACKAGES = ("schemas", "transforms")
"""Packages whose source decides table contents: changing any of their files reprocesses every study."""


@cache
def code_fingerprint() -> str:
    """Hash of the source of :data:`CODE_PACKAGES` (so a code change without a version bump still reprocesses)."""
    return source_fingerprint(resources.files(package) for package in CODE_PACKAGES)


def source_fingerprint(roots: Iterable[Traversable]) -> str:
    """Hash of every ``.py`` file under ``roots``: names relative to their root, and contents."""
    digest = hashlib.blake2b(digest_size=16)
    for root in roots:
        for relative, entry in sorted(_python_files(root, root.name)):
            digest.update(relative.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()


def _python_files(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for entry in folder.iterdir():
        name = f"{prefix}/{entry.name}"
        if entry.is_dir() and entry.name != "__pycache__":
            yield from _python_files(entry, name)
        elif entry.name.endswith(".py"):
            yield name, entry
