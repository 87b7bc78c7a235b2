"""WebDataset-safe sample keys.

WebDataset groups the members of a tar into samples by splitting each member
name at its first dot after the last slash, so a ``__key__`` must hold neither
dots nor slashes; keys also become file names, so they must not be able to
climb out of a directory.

The rule, ``safe_key(name, identity)``:

1. readable part: ``name`` with every character outside ``[A-Za-z0-9_-]``
   replaced by ``_``, runs of ``_`` collapsed, leading/trailing ``_`` and
   ``-`` stripped, cut to 64 characters, ``"sample"`` if nothing is left;
2. unique part: the first 10 hex digits of SHA-1 of ``identity`` (UTF-8),
   which defaults to ``name``;
3. key = ``{readable}-{unique}``.

So ``safe_key("frankfurt_000000_000294", "gtFine/val/frankfurt/frankfurt_000000_000294")``
is ``"frankfurt_000000_000294-<10 hex>"``. The key depends only on its
arguments (deterministic across machines and runs), and two inputs whose names
sanitise alike (``a.b`` and ``a_b``, the same stem in two folders) still get
different keys because their identities differ. Pass as ``identity`` something
that is unique per input and independent of where the data is mounted, e.g.
the path relative to the dataset root.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_REPEATED_UNDERSCORE = re.compile(r"_{2,}")
MAX_READABLE_LENGTH = 64
HASH_DIGITS = 10


def safe_key(name: str, identity: str | None = None) -> str:
    """A deterministic WebDataset ``__key__`` for ``name``; see the module docstring."""
    readable = _REPEATED_UNDERSCORE.sub("_", _UNSAFE.sub("_", name)).strip("_-")
    readable = readable[:MAX_READABLE_LENGTH].rstrip("_-") or "sample"
    digest = hashlib.sha1((name if identity is None else identity).encode("utf-8")).hexdigest()
    return f"{readable}-{digest[:HASH_DIGITS]}"


def is_safe_key(key: str) -> bool:
    """True for a non-empty key made only of ``[A-Za-z0-9_-]`` (no dots, no slashes)."""
    return bool(key) and _UNSAFE.search(key) is None and not key.startswith("-")
