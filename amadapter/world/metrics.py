"""Appearance-transfer scores on the world, and the class-only ceiling they are read against.

- ``instance_colour_error`` (crop suite): per instance present in both crops, the RGB
  (0-255) distance between the instance's mean colour in the output and in the ground
  truth; averaged over those instances.
- ``transferable_colour_error`` (scene suite): ``colour_error`` per class, over the
  classes present in both target and exemplar only; the rest are *untransferable*
  (nothing in the exemplar says how they look) and reported as a pixel share.
- ``class_only_image``: what the best class-only matcher produces, by definition: every
  pixel of class c is given the exemplar's mean colour of c (all its pixels of c), while
  the ground truth's texture and shading are kept, i.e. ``truth - mean(truth over the
  unit) + mean(exemplar over c)`` on each unit, a unit being one instance (crop suite)
  or one class (scene suite). Its error is then exactly the distance between the
  exemplar's class mean and each unit's true mean: the part of the error that no
  matcher blind to geometry can avoid.
"""

from __future__ import annotations

import numpy as np

from amadapter.io.labels import IGNORE_ID

MIN_INSTANCE_PIXELS = 16  # an instance counts when at least this many pixels show in both crops


def colour_error(output: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes of ``labels`` of |mean RGB(output) - mean RGB(truth)| on that class."""
    errors = []
    for c in np.unique(labels):
        if c == IGNORE_ID:
            continue
        region = labels == c
        diff = output[region].astype(np.float64).mean(0) - truth[region].astype(np.float64).mean(0)
        errors.append(np.linalg.norm(diff))
    return float(np.mean(errors))


def shared_instances(target_instances: np.ndarray, exemplar_instances: np.ndarray,
                     min_pixels: int = MIN_INSTANCE_PIXELS) -> np.ndarray:
    """Instance indices with at least ``min_pixels`` pixels in both crops, sorted."""
    t_ids, t_counts = np.unique(target_instances, return_counts=True)
    e_ids, e_counts = np.unique(exemplar_instances, return_counts=True)
    return np.intersect1d(t_ids[t_counts >= min_pixels], e_ids[e_counts >= min_pixels])


def instance_colour_error(output: np.ndarray, truth: np.ndarray, instances: np.ndarray,
                          ids: np.ndarray) -> float:
    """Mean over ``ids`` of |mean RGB(output) - mean RGB(truth)| on the instance's pixels."""
    if len(ids) == 0:
        raise ValueError("no instance to score: the crops share none")
    errors = []
    for i in ids:
        region = instances == i
        diff = output[region].astype(np.float64).mean(0) - truth[region].astype(np.float64).mean(0)
        errors.append(np.linalg.norm(diff))
    return float(np.mean(errors))


def transferable(labels: np.ndarray, exemplar_labels: np.ndarray) -> np.ndarray:
    """Mask of the target pixels whose class the exemplar shows (ignore pixels: never)."""
    shown = np.setdiff1d(np.unique(exemplar_labels), [IGNORE_ID])
    return np.isin(labels, shown) & (labels != IGNORE_ID)


def untransferable_share(labels: np.ndarray, exemplar_labels: np.ndarray) -> float:
    """Share of the target's labelled pixels whose class the exemplar does not show."""
    labelled = labels != IGNORE_ID
    return float(1.0 - transferable(labels, exemplar_labels)[labelled].sum() / max(1, labelled.sum()))


def transferable_colour_error(output: np.ndarray, truth: np.ndarray, labels: np.ndarray,
                              exemplar_labels: np.ndarray) -> float:
    """``colour_error`` over the classes present in both target and exemplar."""
    only = np.where(transferable(labels, exemplar_labels), labels, IGNORE_ID).astype(np.uint8)
    if (only == IGNORE_ID).all():
        raise ValueError("no transferable class: the exemplar shows none of the target's classes")
    return colour_error(output, truth, only)


def class_only_image(truth: np.ndarray, labels: np.ndarray, units: np.ndarray, exemplar_image: np.ndarray,
                     exemplar_labels: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64: the class-only matcher's output defined above. Pixels of classes
    the exemplar lacks keep the ground truth (they are never scored)."""
    truth = truth.astype(np.float64)
    out = truth.copy()
    for c in np.unique(labels):
        in_exemplar = exemplar_labels == c
        if c == IGNORE_ID or not in_exemplar.any():
            continue
        exemplar_mean = exemplar_image[in_exemplar].astype(np.float64).mean(0)
        for unit in np.unique(units[labels == c]):
            region = (labels == c) & (units == unit)
            out[region] = truth[region] - truth[region].mean(0) + exemplar_mean
    return out
