"""A rendered image -> the ``Sample`` written to its shard: the image, its label (the
target's label map nearest-resized to the output size with the pipeline's own resize, so
image and label agree pixel for pixel) and its json (provenance: source, seed, model,
and every exemplar with what it lent)."""

from __future__ import annotations

import numpy as np
import torch

from amadapter.io.labels import CLASS_NAMES
from amadapter.io.resize import resize_labels_nearest
from amadapter.io.shard_format import SOURCE_META_KEY
from storage.records import Sample
from transforms.synthesis_request import LentPart, SynthesisRequest


def _lent_record(part: LentPart) -> dict:
    """What the sample's json says of one exemplar: which it is and what it lent."""
    lent = part.lent
    if lent.classes is not None:
        lends = {"classes": [CLASS_NAMES[c] for c in lent.classes]}
    elif lent.mask_path is not None:
        lends = {"mask": lent.mask_path}
    else:
        lends = "rest"
    return {
        "key": part.exemplar.key,
        "photo": part.exemplar.photo_path,
        "label": part.exemplar.label_path,
        "score": lent.score,
        "lends": lends,
    }


def build_sample(request: SynthesisRequest, image: np.ndarray, size, provenance: dict) -> Sample:
    """The sample of one target of a batch; ``provenance`` is what the batch's call shares."""
    target = request.target
    labels = torch.from_numpy(target.record.train_ids)[None]
    label = resize_labels_nearest(labels, size)[0].numpy()
    meta = {
        SOURCE_META_KEY: target.source,
        "label_key": target.record.key,
        "sample_index": target.index,
        "seed": target.seed,
        "exemplar": _lent_record(request.parts[0]),  # the primary one, as before
        "exemplars": [_lent_record(part) for part in request.parts],
        "source_size": list(target.record.train_ids.shape),
        **provenance,
    }
    return Sample(target.key, image, label, meta)
