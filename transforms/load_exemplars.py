"""Read a pool entry as an ``Exemplar``: its label map and photo, decoded and checked.

Called once per distinct exemplar of a batch by ``transforms.load_batch``, right before
that batch's model call, so that an unreadable exemplar fails only the targets that use
it (an error inside the model call would fail the whole batch).
"""

from __future__ import annotations

from storage.input_reads import read_label_record, read_photo
from storage.records import LabelSource
from transforms.synthesis_request import Exemplar


def load_exemplar(source: LabelSource) -> Exemplar:
    """Decode the entry's label map and photo (which must exist and match its size);
    raises the entry's ``InputError`` (e.g. ``UnreadableImageError`` naming the photo)."""
    record = read_label_record(source, photos="require")
    return Exemplar(
        key=source.key,
        photo_path=source.photo_path,
        label_path=source.label_path,
        image=read_photo(source.photo_path),
        labels=record.train_ids,
    )
