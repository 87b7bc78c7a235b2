"""C from label IDs with true 2-D nearest resizing, at any aspect ratio."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from amadapter.io.resize import resize_labels_nearest
from amadapter.models.class_cost import class_cost
from tests.model_helpers import single_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

# 4x8 hand-made grid: left half road (0), right half car (13), bottom-right corner ignore
GRID = torch.tensor(
    [
        [0, 0, 0, 0, 13, 13, 13, 13],
        [0, 0, 0, 0, 13, 13, 13, 13],
        [0, 0, 0, 0, 13, 13, 255, 255],
        [0, 0, 0, 0, 13, 13, 255, 255],
    ],
    dtype=torch.uint8,
)


def _expected(query: np.ndarray, exemplar: np.ndarray) -> np.ndarray:
    q, x = query.reshape(-1), exemplar.reshape(-1)
    return np.array([[float(a == b and a != 255) for b in x] for a in q])


def test_cost_at_full_resolution_matches_hand_computed():
    exemplar = torch.flip(GRID, dims=[1])  # car on the left, road on the right
    cost = class_cost(GRID[None], exemplar[None], (4, 8), (4, 8))[0]
    assert cost.shape == (32, 32)
    np.testing.assert_array_equal(cost.numpy(), _expected(GRID.numpy(), exemplar.numpy()))
    # query (0, 0) is road: it matches exactly the 16 road tokens of the exemplar's right half
    assert cost[0].reshape(4, 8)[:, 4:].sum() == 16 and cost[0].reshape(4, 8)[:, :4].sum() == 0
    # ignore matches nothing, not even ignore
    assert cost[2 * 8 + 6].sum() == 0


def test_cost_at_half_resolution_matches_hand_computed():
    cost = class_cost(GRID[None], GRID[None], (2, 4), (2, 4))[0]
    # nearest at pixel centres of the 2x4 grid samples rows 1, 3 and columns 1, 3, 5, 7
    small = np.array([[0, 0, 13, 13], [0, 0, 13, 255]])
    np.testing.assert_array_equal(resize_labels_nearest(GRID[None], (2, 4))[0].numpy(), small)
    expected = np.array(
        [
            [1, 1, 0, 0, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0, 0, 1, 0],
            [0, 0, 1, 1, 0, 0, 1, 0],
            [1, 1, 0, 0, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(cost.numpy(), expected)


def test_query_and_exemplar_grids_may_differ_in_size_and_aspect():
    query = torch.zeros(1, 64, 128, dtype=torch.uint8)
    exemplar = torch.full((1, 90, 160), 13, dtype=torch.uint8)
    exemplar[:, :, :80] = 0
    cost = class_cost(query, exemplar, (4, 8), (9, 16))
    assert cost.shape == (1, 32, 144)
    # every road query matches the left half of the exemplar grid, nothing else
    per_exemplar_token = cost[0, 0].reshape(9, 16)
    assert per_exemplar_token[:, :8].all() and not per_exemplar_token[:, 8:].any()


def test_2d_resize_keeps_regions_where_flattened_resize_moves_them():
    # 8x16 map: a 4x4 car square at rows 2-5, columns 4-7, on road
    labels = torch.zeros(1, 8, 16, dtype=torch.uint8)
    labels[:, 2:6, 4:8] = 13
    small = resize_labels_nearest(labels, (4, 8))[0]
    car_rows, car_cols = torch.nonzero(small == 13, as_tuple=True)
    assert sorted(set(car_rows.tolist())) == [1, 2] and sorted(set(car_cols.tolist())) == [2, 3]

    # the authors' way: interpolate the flattened token sequence, then reshape
    flat = F.interpolate(labels.float().view(1, 1, -1), size=32, mode="nearest").view(4, 8)
    flat_rows, flat_cols = torch.nonzero(flat == 13, as_tuple=True)
    # the car lands in different places: regions are not preserved
    assert not torch.equal(small, flat.to(torch.uint8))
    assert set(zip(flat_rows.tolist(), flat_cols.tolist())) != set(zip(car_rows.tolist(), car_cols.tolist()))
    # and C built from it would pair the car with the wrong exemplar tokens
    cost_2d = class_cost(labels, labels, (4, 8), (4, 8))[0]
    cost_flat = (flat.reshape(-1)[:, None] == flat.reshape(-1)[None, :]).float()
    assert not torch.equal(cost_2d, cost_flat)
