"""Several exemplars per target: region bookkeeping, the attention restriction, and
the effect on the world with the bundled model."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from amadapter.models.attention_processors import NO_SLOT, AttentionPlan, AugmentedSelfAttnProcessor
from amadapter.io.errors import ExemplarRegionError
from amadapter.pipelines.exemplar_regions import ExemplarRegion, region_slots
from amadapter.models.matcher import AppearanceMatchingAdapter
from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

LABELS = np.array([[0, 0, 10, 10], [0, 1, 10, 13], [13, 13, 255, 1]], np.uint8)


def test_slots_follow_classes_masks_and_the_rest():
    mask = np.zeros(LABELS.shape, bool)
    mask[2, 3] = True  # a painted pixel of class 1
    distinct, slots = region_slots(
        LABELS, [ExemplarRegion(4, (0, 10)), ExemplarRegion(7, mask=mask), ExemplarRegion(2)]
    )
    assert distinct == [4, 7, 2]
    expected = np.array([[0, 0, 0, 0], [0, 2, 0, 2], [2, 2, 2, 1]], np.uint8)
    np.testing.assert_array_equal(slots, expected)


def test_unassigned_pixels_read_the_first_exemplar_or_none():
    regions = [ExemplarRegion(3, (13,)), ExemplarRegion(5, (10,))]
    _, first = region_slots(LABELS, regions, "first")
    _, none = region_slots(LABELS, regions, "none")
    assert set(first[LABELS == 0].tolist()) == {0} and set(none[LABELS == 0].tolist()) == {NO_SLOT}
    assert (none[LABELS == 10] == 1).all() and (none[LABELS == 13] == 0).all()


def test_one_exemplar_for_two_regions_is_one_slot():
    distinct, slots = region_slots(LABELS, [ExemplarRegion(6, (0,)), ExemplarRegion(6, (10,)), ExemplarRegion(1)])
    assert distinct == [6, 1] and set(slots[np.isin(LABELS, (0, 10))].tolist()) == {0}


@pytest.mark.parametrize(
    "regions, reason",
    [
        ([ExemplarRegion(0, (0, 10)), ExemplarRegion(1, (10,))], "overlapping assignments: regions 0 and 1 both lend class 10"),
        ([ExemplarRegion(0, (0,)), ExemplarRegion(1, mask=LABELS == 0)], "overlapping assignments: regions 0 and 1 both lend 3 pixels"),
        ([ExemplarRegion(0, (19,))], "unknown train ID 19"),
        ([ExemplarRegion(0, mask=np.ones((2, 2), bool))], "mask is 2x2, the label map 3x4"),
        ([ExemplarRegion(0), ExemplarRegion(1)], "regions 0 and 1 are both 'rest'"),
        ([ExemplarRegion(0, (1,), mask=LABELS == 1)], "both classes and a mask"),
        ([], "no exemplar regions"),
    ],
)
def test_bad_regions_are_a_named_error(regions, reason):
    with pytest.raises(ExemplarRegionError, match=reason) as error:
        region_slots(LABELS, regions, name="assignment[3]")
    assert error.value.code == "bad_exemplar_regions" and error.value.path == "assignment[3]"


@pytest.mark.parametrize("mode", ["augmented", "categorical", "am_adapter"])
def test_a_query_never_reads_an_exemplar_it_is_not_assigned(mode):
    """Rows [target | exemplar 1 | exemplar 2]; the left half of the target reads
    exemplar 1, the right half exemplar 2. Changing exemplar 2 changes only the
    right half's attention output, in every mode."""
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    processor = AugmentedSelfAttnProcessor("down")
    adapter = AppearanceMatchingAdapter(heads=2, max_tokens=64)
    grid = (4, 8)
    slots = torch.full((3, *grid), NO_SLOT, dtype=torch.uint8)
    slots[0, :, :4], slots[0, :, 4:] = 0, 1
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, 19, (3, *grid)).astype(np.uint8))
    plan = AttentionPlan(mode, torch.tensor([[1, 2], [-1, -1], [-1, -1]]), grid, labels, adapter, 64, 5.0, slots)
    hidden = torch.randn(3, 32, 16)
    changed = hidden.clone()
    changed[2] = torch.randn(32, 16)
    with torch.no_grad():
        a = processor(attn, hidden, attention_plan=plan)[0].view(*grid, 16)
        b = processor(attn, changed, attention_plan=plan)[0].view(*grid, 16)
    torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=0)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-4)


def test_regions_in_the_pipeline_read_each_exemplar_where_assigned():
    pipe = tiny_pipeline()
    rng = np.random.default_rng(4)
    target, images, labels = block_labels(rng), [photo(rng), photo(rng)], [block_labels(rng), block_labels(rng)]
    present = [int(c) for c in np.unique(target) if c != 255]
    regions = [[ExemplarRegion(0, tuple(present[:3])), ExemplarRegion(1)]]
    split = pipe([target], images, labels, assignment=regions, seeds=[1], num_inference_steps=2).images
    one = pipe([target], images[:1], labels[:1], assignment=[0], seeds=[1], num_inference_steps=2).images
    assert np.isfinite(split).all() and not np.allclose(split, one, atol=1e-4)
    # a target given one exemplar as a one-region list renders as with the plain index
    whole = pipe([target], images[:1], labels[:1], assignment=[[ExemplarRegion(0)]], seeds=[1],
                 num_inference_steps=2).images
    np.testing.assert_allclose(whole, one, atol=1e-5)
    with pytest.raises(ExemplarRegionError, match=r"assignment\[0\]"):
        pipe([target], images, labels, assignment=[[ExemplarRegion(0), ExemplarRegion(1)]], num_inference_steps=1)


def test_on_the_world_each_region_takes_its_exemplars_appearance():
    """Road and sky from style A, the rest from style B (bundled model, 2 test pairs;
    16 pairs in bench/RESULTS.md): each region is closer to its own style's render,
    and the whole image closer to the composite than either single exemplar gets."""
    from bench.regions import DEFAULT_MODEL, region_errors
    from amadapter.pipelines.pipeline_amadapter import AMAdapterPipeline

    pipe = AMAdapterPipeline.from_pretrained(str(DEFAULT_MODEL), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    errors = region_errors(pipe, pairs=2, steps=20)
    regions = errors["regions"]
    assert regions["lent_vs_a"] < regions["lent_vs_b"] and regions["rest_vs_b"] < regions["rest_vs_a"]
    assert regions["vs_composite"] < min(errors["only_a"]["vs_composite"], errors["only_b"]["vs_composite"])
