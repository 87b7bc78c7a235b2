"""amadapter.models.segmentation_models: the project's segmenter and a transformers SegFormer
(tiny random config) load from local paths into one callable giving logits at label resolution."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from amadapter.models.segformer import cityscapes_segformer, pixel_values
from amadapter.models.segmenter import SmallSegmenter, images_to_tensor
from amadapter.models.segmentation_models import SegmenterFormatError, load_segmentation_model

TINY_SEGFORMER = dict(
    hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
    decoder_hidden_size=16, sr_ratios=[4, 2, 1, 1],  # attention reduction fits 16x32 inputs
)


@pytest.fixture
def images():
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 32, 64, 3), np.uint8))


def test_project_segmenter_from_directory_and_file(tmp_path, images):
    torch.manual_seed(0)
    segmenter = SmallSegmenter(width=8).eval()
    save_file(segmenter.state_dict(), str(tmp_path / "segmenter.safetensors"))
    from_dir = load_segmentation_model(tmp_path)
    from_file = load_segmentation_model(tmp_path / "segmenter.safetensors")
    logits = from_dir(images)
    assert from_dir.kind == "project" and logits.shape == (2, 19, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(logits, segmenter(images_to_tensor(images)))
    torch.testing.assert_close(from_file(images), logits)
    assert from_dir.weights_hash == from_file.weights_hash


def test_a_deeper_project_segmenter_with_coordinates_loads_as_saved(tmp_path, images):
    torch.manual_seed(0)
    segmenter = SmallSegmenter(width=8, levels=4, coordinates=True).eval()
    save_file(segmenter.state_dict(), str(tmp_path / "segmenter.safetensors"))
    loaded = load_segmentation_model(tmp_path)
    assert loaded.module.levels == 4 and loaded.module.coordinates
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), segmenter(images_to_tensor(images)))
        # the two extra input channels are the coordinates: without their weights, other logits
        logits = loaded(images)
        loaded.module.enc1[0].weight[:, 3:] = 0
        assert not torch.allclose(loaded(images), logits)


def test_transformers_segformer_directory(tmp_path, images):
    torch.manual_seed(0)
    model = cityscapes_segformer(config=TINY_SEGFORMER).eval()
    model.save_pretrained(tmp_path)
    loaded = load_segmentation_model(tmp_path)
    logits = loaded(images)
    assert loaded.kind == "transformers" and logits.shape == (2, 19, 32, 64)
    with torch.no_grad():  # SegFormer predicts at 1/4 resolution; upsampled to the labels'
        quarter = model(pixel_values=pixel_values(images)).logits
    assert quarter.shape[-2:] == (8, 16)
    expected = F.interpolate(quarter, size=(32, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(loaded(images), logits)  # deterministic


def test_rejects_other_class_spaces_and_non_models(tmp_path):
    ade = tmp_path / "ade"
    model = cityscapes_segformer(config=TINY_SEGFORMER)
    model.config.id2label = {i: f"ade-{i}" for i in range(19)}
    model.save_pretrained(ade)
    with pytest.raises(SegmenterFormatError, match="not the Cityscapes train classes"):
        load_segmentation_model(ade)
    save_file(SmallSegmenter(num_classes=5, width=8).state_dict(), str(tmp_path / "five.safetensors"))
    with pytest.raises(SegmenterFormatError, match="predicts 5 classes"):
        load_segmentation_model(tmp_path / "five.safetensors")
    with pytest.raises(SegmenterFormatError, match="not a segmentation model"):
        load_segmentation_model(tmp_path / "missing")
