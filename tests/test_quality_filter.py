"""The quality filter's model side (amadapter.filtering): both segmenter formats (the
project's SmallSegmenter and a tiny random transformers SegFormer saved with
save_pretrained), per-pixel losses, per-class reference losses, the masking rule."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from amadapter import world
from amadapter.filtering import (
    ReferenceLosses,
    SegmenterFormatError,
    filter_pixels,
    load_segmentation_model,
    measure_reference_losses,
    pixel_losses,
)
from amadapter.io.labels import CLASS_NAMES, IGNORE_ID, NUM_CLASSES
from amadapter.models.segmenter import SmallSegmenter

SIZE = (16, 32)


def save_small_segmenter(directory, seed: int = 0, width: int = 8) -> SmallSegmenter:
    """A random SmallSegmenter saved the way jobs.train_segmenter saves one."""
    torch.manual_seed(seed)
    model = SmallSegmenter(width=width).eval()
    directory.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(directory / "segmenter.safetensors"))
    return model


def save_tiny_segformer(directory, num_labels: int = NUM_CLASSES, id2label=None):
    torch.manual_seed(0)
    config = SegformerConfig(
        num_labels=num_labels, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16],
        num_attention_heads=[1, 1, 1, 1], sr_ratios=[1, 1, 1, 1], decoder_hidden_size=16,
        id2label=id2label or {i: f"LABEL_{i}" for i in range(num_labels)},
    )  # fmt: skip
    model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(str(directory))
    return model


def scenes(n: int, start: int = 0):
    seeds = world.split_seeds("val", n, start=start)
    return [world.scene(s, s, *SIZE) for s in seeds]


def test_the_project_format_loads_with_its_width_from_the_weights(tmp_path):
    saved = save_small_segmenter(tmp_path / "seg", width=8)
    model = load_segmentation_model(str(tmp_path / "seg"))
    photo, _ = scenes(1)[0]
    expected = saved(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0)
    assert (model.kind, model.description) == ("project", "SmallSegmenter(width=8)")
    assert torch.allclose(model.logits(photo[None]), expected.detach(), atol=1e-4)


def test_a_transformers_segformer_gives_train_id_logits_at_the_image_size(tmp_path):
    saved = save_tiny_segformer(tmp_path / "segformer")
    model = load_segmentation_model(str(tmp_path / "segformer"))
    photo, _ = scenes(1)[0]
    logits = model.logits(photo[None])
    assert (model.kind, model.description) == ("transformers", "SegformerForSemanticSegmentation")
    assert logits.shape == (1, NUM_CLASSES, *SIZE) and logits.dtype == torch.float32
    # ImageNet normalisation (no preprocessor_config.json), logits upsampled bilinearly
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0 - mean) / std
    with torch.no_grad():
        low = saved(pixel_values=x).logits
    assert low.shape[-2:] == (SIZE[0] // 4, SIZE[1] // 4)
    expected = F.interpolate(low, size=SIZE, mode="bilinear", align_corners=False)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_a_checkpoint_naming_the_cityscapes_classes_is_reordered_to_train_ids(tmp_path):
    reversed_names = {i: name for i, name in enumerate(reversed(CLASS_NAMES))}
    save_tiny_segformer(tmp_path / "plain")
    save_tiny_segformer(tmp_path / "reversed", id2label=reversed_names)  # same weights (seed 0)
    photo, _ = scenes(1)[0]
    plain = load_segmentation_model(str(tmp_path / "plain")).logits(photo[None])
    named = load_segmentation_model(str(tmp_path / "reversed")).logits(photo[None])
    assert torch.equal(named, plain.flip(1))  # channel of train ID c = model channel 18 - c


def test_other_directories_are_a_named_error(tmp_path):
    with pytest.raises(SegmenterFormatError, match="not a segmentation model"):
        load_segmentation_model(str(tmp_path))
    save_tiny_segformer(tmp_path / "ten", num_labels=10)
    with pytest.raises(SegmenterFormatError, match="predicts 10 classes"):
        load_segmentation_model(str(tmp_path / "ten"))


def test_reference_losses_are_the_class_means_of_the_pixel_losses(tmp_path):
    save_small_segmenter(tmp_path / "seg")
    model = load_segmentation_model(str(tmp_path / "seg"))
    frames = scenes(3)
    frames[0][1][:2] = IGNORE_ID  # ignore pixels count for no class
    reference = measure_reference_losses(model, frames)
    sums, counts = np.zeros(NUM_CLASSES), np.zeros(NUM_CLASSES, np.int64)
    for photo, label in frames:
        logits = model.logits(photo[None])
        loss = F.cross_entropy(logits, torch.from_numpy(label).long()[None], ignore_index=255,
                               reduction="none")[0].numpy()  # fmt: skip
        assert np.array_equal(loss, pixel_losses(model, photo, label))
        for c in range(NUM_CLASSES):
            sums[c] += loss[label == c].astype(np.float64).sum()
            counts[c] += (label == c).sum()
    assert reference.images == 3 and reference.pixels == tuple(counts)
    for c in range(NUM_CLASSES):
        if counts[c]:
            assert reference.losses[c] == pytest.approx(sums[c] / counts[c], rel=1e-5)
        else:
            assert reference.losses[c] is None
    assert any(n == 0 for n in counts)  # the world at 16x32 misses some class: None tested
    assert ReferenceLosses.from_json(json.loads(json.dumps(reference.to_json()))) == reference


def test_pixels_above_margin_times_their_class_reference_become_ignore():
    label = np.array([[0, 0, 1, 255], [1, 2, 2, 0]], np.uint8)
    losses = np.array([[1.2, 1.3, 2.4, 9.0], [2.6, 100.0, 5.0, 0.1]], np.float32)
    reference = ReferenceLosses(
        losses=(1.0, 2.0) + (None,) * (NUM_CLASSES - 2), pixels=(1,) * NUM_CLASSES, images=1
    )
    outcome = filter_pixels(losses, label, reference, margin=1.25)
    # class 0: limit 1.25 (1.3 dropped); class 1: limit 2.5 (2.6 dropped); class 2: no
    # reference, kept whatever its loss; ignore stays ignore
    expected = np.array([[0, 255, 1, 255], [255, 2, 2, 0]], np.uint8)
    assert np.array_equal(outcome.label, expected)
    assert outcome.dropped == 2 and outcome.kept_share == pytest.approx(5 / 7)
    empty = filter_pixels(losses, np.full_like(label, 255), reference, margin=1.25)
    assert empty.kept_share == 1.0 and empty.dropped == 0
