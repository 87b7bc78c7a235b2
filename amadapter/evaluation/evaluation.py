"""One evaluation run: figures accumulated over batches of generated samples and real photos.

``Evaluation`` holds the models (any of them may be absent: its figure is then null)
and the running state; callers read the files and feed it arrays of one size:

    evaluation = Evaluation(features=..., clip=..., segmenter=...)
    evaluation.add_exemplar(path, photo)             # once per exemplar photo, for CLIP-I
    evaluation.add_generated(keys, images, labels, exemplar_paths)
    evaluation.add_real(photos)                      # the FID / KID reference set
    summary = evaluation.summary()                   # what eval.json holds

Per sample it keeps its layout mIoU and CLIP-I (``per_sample``) and, for the report, the
pixels of the ``worst_count`` worst samples only (lowest layout mIoU, or lowest CLIP-I
without a segmenter), so memory stays bounded by the feature vectors.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from amadapter.evaluation.clip_similarity import ClipImageEmbedder, cosine_similarity
from amadapter.evaluation.confusion import class_iou, confusion_matrix, mean_iou
from amadapter.evaluation.feature_extractors import FeatureExtractor
from amadapter.evaluation.frechet import frechet_distance
from amadapter.evaluation.kernel_distance import kernel_distance
from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES
from amadapter.io.sample_format import class_pixel_counts
from amadapter.models.segmentation_models import SegmentationModel


@dataclass(frozen=True)
class SampleScore:
    key: str
    miou: float | None  # layout agreement of this sample (None without a segmenter)
    clip_i: float | None  # cosine similarity to its exemplar (None without CLIP or exemplar)


@dataclass(frozen=True)
class WorstSample:
    score: SampleScore
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8 target train IDs
    prediction: np.ndarray | None  # (H, W) uint8, the segmenter's


class Evaluation:
    def __init__(
        self,
        features: FeatureExtractor | None = None,
        clip: ClipImageEmbedder | None = None,
        segmenter: SegmentationModel | None = None,
        worst_count: int = 8,
    ):
        self.features, self.clip, self.segmenter = features, clip, segmenter
        self.worst_count = worst_count
        self.per_sample: list[SampleScore] = []
        self._generated_features: list[np.ndarray] = []
        self._real_features: list[np.ndarray] = []
        self._exemplar_embeddings: dict[str, np.ndarray] = {}
        self._confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        self._label_pixels = np.zeros(256, np.int64)
        self._class_samples = np.zeros(NUM_CLASSES, np.int64)
        self._worst: list[tuple[float, int, WorstSample]] = []  # max-heap by -rank value
        self.size: tuple[int, int] | None = None

    def needs_exemplar(self, path: str | None) -> bool:
        """Whether CLIP-I still needs the photo at ``path`` (read it, then ``add_exemplar``)."""
        return self.clip is not None and path is not None and path not in self._exemplar_embeddings

    def add_exemplar(self, path: str, photo: np.ndarray) -> None:
        self._exemplar_embeddings[path] = self.clip(photo[None])[0]

    def add_generated(
        self,
        keys: list[str],
        images: np.ndarray,
        labels: np.ndarray,
        exemplar_paths: list[str | None],
    ) -> None:
        """A batch of generated samples: ``(B, H, W, 3)`` uint8 images, ``(B, H, W)`` uint8
        target labels; the exemplar photo of each (None: unknown or unreadable)."""
        self._check_size(images)
        for label in labels:
            counts = class_pixel_counts(label)
            self._label_pixels += counts
            self._class_samples += counts[:NUM_CLASSES] > 0
        if self.features is not None:
            self._generated_features.append(self.features(images).astype(np.float32))
        predictions = self._predict(images)
        clip_scores = self._clip_scores(images, exemplar_paths)
        for i, key in enumerate(keys):
            miou = None
            if predictions is not None:
                confusion = confusion_matrix(predictions[i], labels[i])
                self._confusion += confusion
                miou = _finite(mean_iou(confusion))  # None for a sample that is all ignore
            score = SampleScore(key, miou, clip_scores[i])
            self.per_sample.append(score)
            prediction = None if predictions is None else predictions[i]
            self._keep_if_worst(WorstSample(score, images[i], labels[i], prediction))

    def add_real(self, photos: np.ndarray) -> None:
        """A batch of real photos ``(B, H, W, 3)`` uint8 at the generated samples' size."""
        self._check_size(photos)
        if self.features is not None:
            self._real_features.append(self.features(photos).astype(np.float32))

    def worst(self) -> list[WorstSample]:
        """The kept worst samples, worst first."""
        return [entry for _, _, entry in sorted(self._worst, key=lambda e: (-e[0], e[1]))]

    def summary(self, kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
        """The figures as JSON-ready values; a figure whose model or data is missing is None."""
        return {
            "samples": len(self.per_sample),
            "size": list(self.size) if self.size else None,
            **self._distribution_figures(kid_subsets, kid_subset_size, seed),
            "clip_i": self._clip_summary(),
            "layout": self._layout_summary(),
            "classes": self._class_table(),
            "ignore_share": _share(self._label_pixels[IGNORE_ID], self._label_pixels.sum()),
            "worst": [_score_json(w.score) for w in self.worst()],
        }

    def _check_size(self, images: np.ndarray) -> None:
        size = tuple(images.shape[1:3])
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise ValueError(f"images of {size} in an evaluation at {self.size}: resize them first")

    def _predict(self, images: np.ndarray) -> np.ndarray | None:
        if self.segmenter is None:
            return None
        logits = self.segmenter(torch.from_numpy(np.ascontiguousarray(images)))
        return logits.argmax(1).to(torch.uint8).cpu().numpy()

    def _clip_scores(self, images: np.ndarray, exemplar_paths) -> list[float | None]:
        known = [i for i, p in enumerate(exemplar_paths) if p in self._exemplar_embeddings]
        scores: list[float | None] = [None] * len(images)
        if self.clip is None or not known:
            return scores
        outputs = self.clip(images[known])
        exemplars = np.stack([self._exemplar_embeddings[exemplar_paths[i]] for i in known])
        for i, value in zip(known, cosine_similarity(outputs, exemplars)):
            scores[i] = float(value)
        return scores

    def _keep_if_worst(self, sample: WorstSample) -> None:
        rank = sample.score.miou if sample.score.miou is not None else sample.score.clip_i
        if rank is None or self.worst_count <= 0:
            return
        entry = (-rank, len(self.per_sample), sample)  # heap top = the best of the kept
        if len(self._worst) < self.worst_count:
            heapq.heappush(self._worst, entry)
        elif entry[0] > self._worst[0][0]:
            heapq.heapreplace(self._worst, entry)

    def _distribution_figures(self, subsets: int, subset_size: int, seed: int) -> dict:
        if self.features is None or not self._generated_features or not self._real_features:
            return {"fid": None, "kid": None}
        generated = np.concatenate(self._generated_features)
        real = np.concatenate(self._real_features)
        counts = {
            "feature_extractor": self.features.name,
            "feature_dim": int(generated.shape[1]),
            "generated_count": len(generated),
            "real_count": len(real),
        }
        kid_mean, kid_std, used = kernel_distance(generated, real, subsets, subset_size, seed)
        return {
            "fid": {"value": frechet_distance(generated, real), **counts},
            "kid": {"mean": kid_mean, "std": kid_std, "subsets": subsets, "subset_size": used, **counts},
        }

    def _clip_summary(self) -> dict | None:
        values = [s.clip_i for s in self.per_sample if s.clip_i is not None]
        if self.clip is None:
            return None
        return {
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None,
            "count": len(values),
            "without_exemplar": len(self.per_sample) - len(values),
            "model": self.clip.path,
        }

    def _layout_summary(self) -> dict | None:
        if self.segmenter is None:
            return None
        return {
            "miou": _finite(mean_iou(self._confusion)),
            "segmenter": self.segmenter.path,
            "segmenter_kind": self.segmenter.kind,
            "segmenter_weights_sha256": self.segmenter.weights_hash,
        }

    def _class_table(self) -> list[dict]:
        labelled = self._label_pixels[:NUM_CLASSES].sum()
        iou = class_iou(self._confusion) if self.segmenter is not None else None
        predicted = self._confusion.sum(0)
        rows = []
        for c, name in enumerate(CLASS_NAMES):
            row = {
                "id": c,
                "name": name,
                "pixels": int(self._label_pixels[c]),
                "share": _share(self._label_pixels[c], labelled),
                "samples": int(self._class_samples[c]),
            }
            if iou is not None:
                row["predicted_share"] = _share(predicted[c], predicted.sum())
                row["iou"] = _finite(float(iou[c]))
            rows.append(row)
        return rows


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else value


def _share(part, whole) -> float:
    return float(part / whole) if whole else 0.0


def _score_json(score: SampleScore) -> dict:
    return {"key": score.key, "miou": score.miou, "clip_i": score.clip_i}
