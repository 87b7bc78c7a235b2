"""The class space: Cityscapes' 19 train classes, shared by BDD100K.

Built from ``cityscapesscripts.helpers.labels`` so names, IDs and colours stay
those of the official table. Label maps everywhere in the project are uint8
arrays of train IDs 0..18, with 255 for "ignore".
"""

from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from amadapter.io.errors import NotALabelMapError, UnknownColorError, UnknownLabelIdError

IGNORE_ID = 255
_TRAIN_LABELS = sorted(
    (l for l in _CITYSCAPES_LABELS if 0 <= l.trainId < IGNORE_ID), key=lambda l: l.trainId
)
NUM_CLASSES = len(_TRAIN_LABELS)  # 19
CLASS_NAMES: tuple[str, ...] = tuple(l.name for l in _TRAIN_LABELS)
# (19, 3) uint8: the colour of each train ID, as in Cityscapes *_color.png and BDD colormaps.
PALETTE = np.array([l.color for l in _TRAIN_LABELS], dtype=np.uint8)
IGNORE_COLOR = (0, 0, 0)

# Lookup table label ID -> train ID over all 256 byte values; -1 marks IDs the
# Cityscapes table does not define, so they are reported instead of guessed.
LABEL_ID_TO_TRAIN_ID = np.full(256, -1, dtype=np.int16)
for _l in _CITYSCAPES_LABELS:
    if 0 <= _l.id < 256:
        LABEL_ID_TO_TRAIN_ID[_l.id] = _l.trainId if 0 <= _l.trainId < IGNORE_ID else IGNORE_ID

VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS[:NUM_CLASSES] = True
VALID_TRAIN_IDS[IGNORE_ID] = True


def _color_table() -> dict[int, int]:
    """Packed RGB -> train ID. Train classes win over ignored labels that share
    their colour (Cityscapes draws 'polegroup' like 'pole', 'license plate' like
    'car'): a colour map cannot tell them apart, and the train class is the
    reading that keeps the object."""
    table: dict[int, int] = {}
    for l in _CITYSCAPES_LABELS:
        if not (0 <= l.trainId < IGNORE_ID):
            table.setdefault(_pack(l.color), IGNORE_ID)
    for train_id, color in enumerate(PALETTE):
        table[_pack(color)] = train_id
    return table


def _pack(color) -> int:
    r, g, b = (int(c) for c in color)
    return (r << 16) | (g << 8) | b


_COLOR_TO_TRAIN_ID = _color_table()


def _require_single_channel(array: np.ndarray, path: str) -> None:
    if array.ndim != 2:
        raise NotALabelMapError(
            path, f"expected a single-channel map of IDs, got an array of shape {array.shape}"
        )


def label_ids_to_train_ids(label_ids: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Map a Cityscapes label-ID map to train IDs; unknown IDs are an error."""
    _require_single_channel(label_ids, path)
    mapped = LABEL_ID_TO_TRAIN_ID[label_ids.astype(np.uint8, copy=False)]
    if (mapped < 0).any():
        unknown = sorted(int(v) for v in np.unique(label_ids[mapped < 0]))
        raise UnknownLabelIdError(path, f"label IDs {unknown} are not in the Cityscapes table")
    return mapped.astype(np.uint8)


def check_train_ids(train_ids: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Validate a train-ID map (0..18 or 255) and return it as uint8."""
    _require_single_channel(train_ids, path)
    if train_ids.dtype != np.uint8:
        if train_ids.min(initial=0) < 0 or train_ids.max(initial=0) > 255:
            raise UnknownLabelIdError(path, "values outside 0..255 cannot be train IDs")
        train_ids = train_ids.astype(np.uint8)
    bad = ~VALID_TRAIN_IDS[train_ids]
    if bad.any():
        unknown = sorted(int(v) for v in np.unique(train_ids[bad]))
        raise UnknownLabelIdError(
            path, f"train IDs {unknown} are outside 0..{NUM_CLASSES - 1} and {IGNORE_ID}"
        )
    return train_ids


def colors_to_train_ids(rgb: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Map a colour-coded label map (H, W, 3) to train IDs by exact palette match."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise NotALabelMapError(path, f"expected an RGB colour map, got shape {rgb.shape}")
    packed = (
        (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    )
    colors, inverse = np.unique(packed, return_inverse=True)
    unknown = [int(c) for c in colors if int(c) not in _COLOR_TO_TRAIN_ID]
    if unknown:
        shown = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown[:5]]
        raise UnknownColorError(path, f"{len(unknown)} colours not in the palette, e.g. {shown}")
    lut = np.array([_COLOR_TO_TRAIN_ID[int(c)] for c in colors], dtype=np.uint8)
    return lut[inverse.reshape(packed.shape)]


def train_ids_to_colors(train_ids: np.ndarray) -> np.ndarray:
    """Colour a train-ID map for viewing; ignore is black."""
    full = np.zeros((256, 3), dtype=np.uint8)
    full[:NUM_CLASSES] = PALETTE
    full[IGNORE_ID] = IGNORE_COLOR
    return full[train_ids]


def one_hot(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (NUM_CLASSES + 1, H, W) float32; the last channel is ignore."""
    index = np.where(train_ids == IGNORE_ID, NUM_CLASSES, train_ids).astype(np.int64)
    return (np.arange(NUM_CLASSES + 1)[:, None, None] == index[None]).astype(np.float32)
