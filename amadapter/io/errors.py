"""Named errors for bad input.

Every problem with one input (a file, a label map, a pool) is an ``InputError``
subclass that names the input and the reason. Beam transforms catch
``InputError`` and turn it into a manifest row; anything else is a bug and
should surface.
"""


class InputError(Exception):
    """A problem with one input. ``code`` is the stable, machine-readable name."""

    code = "input_error"

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{self.code}: {path}: {reason}")


class UnreadableImageError(InputError):
    """Missing, truncated, or not an image at all."""

    code = "unreadable_image"


class UnknownLabelIdError(InputError):
    """A label map holds a value that the dataset's table does not define."""

    code = "unknown_label_id"


class NotALabelMapError(InputError):
    """An image that cannot be a map of IDs (e.g. RGB where IDs were expected)."""

    code = "not_a_label_map"


class UnknownColorError(InputError):
    """A colour-coded label map holds a colour outside the palette."""

    code = "unknown_color"


class SizeMismatchError(InputError):
    """A photo and its label map (or a label map and the requested size) differ."""

    code = "size_mismatch"


class MissingPhotoError(InputError):
    """A label map whose photo is required (e.g. an exemplar) has none."""

    code = "missing_photo"


class EmptyRootError(InputError):
    """A dataset root with no label maps under it."""

    code = "empty_root"


class EmptyPoolError(InputError):
    """An exemplar pool (or index) with no usable entries."""

    code = "empty_pool"


class ExemplarRegionError(InputError):
    """A target's exemplar regions are malformed: overlapping assignments, an unknown
    class, a mask of the wrong size, more than one "rest"."""

    code = "bad_exemplar_regions"


class ExemplarMapError(InputError):
    """A line of an ``--exemplar-map`` file that cannot be used: not JSON, a missing or
    misspelt field, an unknown class name, two regions lending one class."""

    code = "bad_exemplar_map"
