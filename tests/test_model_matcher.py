"""The 4-D centre-pivot adapter phi: architecture, size, invariants."""

import pytest
import torch

from amadapter.models.matcher import AppearanceMatchingAdapter, CenterPivotConv4d, encoder_parameter_count
from tests.model_helpers import single_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_parameter_count_matches_the_architecture():
    adapter = AppearanceMatchingAdapter(heads=8)
    per_encoder = {g: sum(p.numel() for p in e.parameters()) for g, e in adapter.encoders.items()}
    # heads+1 -> 16 -> 32 -> 16 -> heads; each layer: (1 + 9) * in * out weights, two biases, GN scale+shift
    by_hand = (9 * 16 + 16 * 32 + 32 * 16 + 16 * 8) * 10 + (16 + 32 + 16 + 8) * 4
    assert by_hand == 13248 == encoder_parameter_count(8)
    assert per_encoder == {"down": by_hand, "mid": by_hand, "up": by_hand}
    assert sum(p.numel() for p in adapter.parameters() if p.requires_grad) == 3 * by_hand


def test_centre_pivot_conv_is_1x1_query_plus_3x3_exemplar_branch():
    conv = CenterPivotConv4d(9, 16)
    x = torch.randn(12, 9, 4, 8)  # (rows * hq * wq, C, hx, wx)
    torch.testing.assert_close(conv(x), conv.query_conv(x) + conv.exemplar_conv(x), atol=1e-5, rtol=1e-5)


def test_phi_is_nonnegative_and_computed_per_row():
    adapter = AppearanceMatchingAdapter(heads=2)
    logits, cost = torch.randn(2, 2, 8, 8), torch.zeros(2, 8, 8)
    base = adapter("up", logits, cost, (2, 4), (2, 4))
    assert base.shape == (2, 2, 8, 8) and (base >= 0).all()  # ends with ReLU
    changed = logits.clone()
    changed[1] += torch.randn(2, 8, 8)
    out = adapter("up", changed, cost, (2, 4), (2, 4))
    torch.testing.assert_close(out[0], base[0])  # rows are independent
