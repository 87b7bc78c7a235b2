"""Which frame a label map shows, so retrieval never hands a target its own frame.

A frame is named by its file: for Cityscapes the ``{city}_{sequence}_{frame}``
stem that all of a frame's files share (``frankfurt_000000_000294`` for its
``_gtFine_labelIds.png``, ``_gtFine_labelTrainIds.png``, ``_gtFine_color.png``,
``_gtCoarse_...`` and ``_leftImg8bit.png`` alike); otherwise the file name
without its extensions (BDD100K's ``masks/x.png`` and ``colormaps/x.png`` are
both ``x``). Directories are ignored, so the same frame under two mount points
or splits is still the same frame. In a pool mixing unrelated folders, two
frames that share a file name are both excluded for a target of that name:
losing one candidate is cheap, returning the target's own photo is not.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

_CITYSCAPES_STEM = re.compile(r"[A-Za-z][A-Za-z-]*_\d{6}_\d{6}")


def frame_id(path_or_name: str) -> str:
    """The frame of a label or photo path (or a bare file name)."""
    name = posixpath.basename(path_or_name.replace("\\", "/").rstrip("/"))
    match = _CITYSCAPES_STEM.match(name)
    return match.group(0) if match else name.split(".")[0]


def frame_hash(frame: str) -> int:
    """A frame's 64-bit hash: the index keeps these sorted to find a frame's rows."""
    digest = hashlib.blake2b(frame.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)
