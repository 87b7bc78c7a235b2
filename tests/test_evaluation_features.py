"""amadapter.evaluation.feature_extractors and clip_similarity: each supported format loads
from a local path (a real TorchScript file of Inception's call signature, tiny transformers
models) and gives deterministic (B, D) features; a state-dict Inception file is refused."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from transformers import CLIPConfig, CLIPModel

from amadapter.evaluation.clip_similarity import ClipImageEmbedder
from amadapter.evaluation.feature_extractors import load_feature_extractor
from amadapter.models.segformer import cityscapes_segformer
from tests.test_segmentation_models import TINY_SEGFORMER


class InceptionCallSignature(nn.Module):
    """A small stand-in with the TorchScript Inception's interface: float NCHW in [0, 255],
    its own resize and rescale, ``return_features``."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 6)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = (F.interpolate(img, size=(8, 8), mode="bilinear", align_corners=False) - 128) / 128
        features = self.proj(x.mean((2, 3)))
        return features if return_features else features.softmax(1)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (3, 32, 64, 3), np.uint8)


def test_torchscript_inception_file(tmp_path, images):
    torch.manual_seed(0)
    module = InceptionCallSignature().eval()
    torch.jit.script(module).save(str(tmp_path / "inception-2015-12-05.pt"))
    extractor = load_feature_extractor(tmp_path / "inception-2015-12-05.pt")
    features = extractor(images)
    assert "inception" in extractor.name and features.shape == (3, 6) and features.dtype == np.float64
    with torch.no_grad():
        expected = module(torch.from_numpy(images).permute(0, 3, 1, 2).float(), return_features=True)
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=1e-6)


def test_state_dict_inception_weights_are_refused_by_name(tmp_path):
    torch.save(InceptionCallSignature().state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    with pytest.raises(ValueError, match="need torchvision's Inception architecture"):
        load_feature_extractor(tmp_path / "pt_inception-2015-12-05-6726825d.pth")


def test_transformers_segformer_and_clip_directories(tmp_path, images):
    torch.manual_seed(0)
    cityscapes_segformer(config=TINY_SEGFORMER).save_pretrained(tmp_path / "segformer")
    segformer = load_feature_extractor(tmp_path / "segformer")
    assert "segformer" in segformer.name and segformer(images).shape == (3, 16)  # last stage width
    np.testing.assert_array_equal(segformer(images), segformer(images))
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=32, patch_size=8)
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=64, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    clip = CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=8)).eval()
    clip.save_pretrained(tmp_path / "clip")
    embedder = ClipImageEmbedder(tmp_path / "clip")
    embeddings = embedder(images)
    assert embeddings.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-9)
    inputs = embedder.processor(images=list(images), return_tensors="pt")["pixel_values"]
    assert inputs.shape == (3, 3, 32, 32)  # CLIP's resize and centre crop to the model's size
    with torch.no_grad():  # the embedding is CLIPModel's own projected image feature
        own = clip.get_image_features(pixel_values=inputs).pooler_output.double()
    np.testing.assert_allclose(embeddings, F.normalize(own, dim=1).numpy(), rtol=1e-5, atol=1e-7)
    assert load_feature_extractor(tmp_path / "clip")(images).shape == (3, 8)
