"""Property-based checks (hypothesis) of the job's two parsers of user input: whatever the
command line or an ``--exemplar-map`` line holds, the outcome is a named error the job
turns into exit 2 (options) or a manifest row (map lines), or a result, never another
exception (which would be a traceback, or a crashed pipeline).

Derandomized (the examples are a function of the test, not of the clock), no example
database, no deadline: the same examples run on every machine, idle or busy."""

import json
import math
import string

import numpy as np
import pytest
from PIL import Image
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from amadapter.io.errors import ExemplarMapError
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from pipeline.augment_graph import resolve_inputs
from pipeline.launch_checks import LaunchError, check_launch
from pipeline.option_values import OptionValueError
from pipeline.options import AugmentOptions, UnknownOptionError, parse_augment_options
from transforms.read_exemplar_map import MappedLabel, _ParseLine, parse_map_line
from storage.records import FailedInput

REPEATABLE = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip


def _job_flags() -> list[str]:
    import argparse

    parser = argparse.ArgumentParser()
    AugmentOptions._add_argparse_args(parser)
    return [flag for action in parser._actions for flag in action.option_strings if flag not in ("-h", "--help")]


JOB_FLAGS = _job_flags()
OTHER_FLAGS = ["--runner", "--direct_num_workers", "--direct_running_mode", "--labels", "--dask_client_address",
               "--flink_master", "--label", "--", "-x", "--samples-per-lable"]  # fmt: skip
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-inf", "inf", "1e999", "0", "-0", "0x10", "1_000", "٣", " 7 ", ""]),
)
sizes = st.tuples(st.integers(-5, 70), st.integers(-5, 70)).map(lambda hw: f"{hw[0]}x{hw[1]}")
paths = st.one_of(
    st.sampled_from(["/", "/nonexistent", ".", "gs://bucket/x", "s3://", "a\x00b", "~", "../../..", "file:///"]),
    st.text(alphabet=string.printable, max_size=20),
)
values = st.one_of(numbers, sizes, paths, st.text(max_size=12))
arguments = st.one_of(
    st.tuples(st.sampled_from(JOB_FLAGS + OTHER_FLAGS), values).map(lambda fv: [fv[0], fv[1]]),
    st.tuples(st.sampled_from(JOB_FLAGS + OTHER_FLAGS), values).map(lambda fv: [f"{fv[0]}={fv[1]}"]),
    st.sampled_from(JOB_FLAGS + OTHER_FLAGS).map(lambda f: [f]),
    st.text(max_size=15).map(lambda t: [t]),
)
command_lines = st.lists(arguments, max_size=5).map(lambda parts: [a for part in parts for a in part])


@pytest.fixture(scope="module")
def launchable(tmp_path_factory):
    """A world root and a tiny model: what a good command line names (so a random one is not
    refused only for lacking them, and nothing falls back to exporting the default world)."""
    root = tmp_path_factory.mktemp("world")
    export_world(root, 2, "test", 16, 32)
    export_world(root, 2, "val", 16, 32)
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    output = tmp_path_factory.mktemp("out")
    return ["--labels", str(root), "--split", "test", "--exemplars-split", "val", "--model", str(model),
            "--output", str(output)]  # fmt: skip


@REPEATABLE
@given(argv=command_lines)
def test_any_command_line_parses_or_is_a_named_launch_error(launchable, argv):
    """Every command line either passes the launch checks or raises one of the errors
    ``jobs.augment.main`` turns into one line and exit 2 (what main runs before the
    pipeline, without running it)."""
    try:
        options = parse_augment_options(launchable + argv)
        inputs = resolve_inputs(options)
        check_launch(options, inputs)
    except (UnknownOptionError, OptionValueError, LaunchError) as error:
        event(type(error).__name__)  # --hypothesis-show-statistics shows the spread
        assert str(error)
        return
    event("launches")
    for name in ("guidance", "filter_margin", "filter_min_kept", "max_failure_rate"):
        assert math.isfinite(getattr(options, name)), name


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-30, 30), st.floats(), st.text(max_size=10),
              st.sampled_from(["road", "sky", "rest", "car", "a.png", "x_gtFine_labelIds.png"])),  # fmt: skip
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
# Label-map names the dataset accepts, on paths that exist, do not, or cannot be opened.
label_names = st.one_of(
    paths.map(lambda p: p + "_gtFine_labelIds.png"),
    st.sampled_from(["folder_gtFine_labelIds.png", "a\x00b_gtFine_labelIds.png", "/_gtFine_labelIds.png",
                     "target_gtFine_labelTrainIds.png"]),  # fmt: skip
)
region_fields = st.fixed_dictionaries(
    {},
    optional={
        "photo": st.one_of(paths, json_values),
        "label": st.one_of(label_names, paths, json_values),
        "classes": st.one_of(st.just("rest"), st.lists(st.one_of(st.integers(-3, 25), st.sampled_from(
            ["road", "sky", "car", "Road", ""]), json_values), max_size=4), json_values),  # fmt: skip
        "mask": st.one_of(paths, json_values),
    },
)
# Regions of the right shape with odd values, so that lines get past the shape checks.
shaped_regions = st.fixed_dictionaries(
    {"photo": paths, "label": label_names,
     "classes": st.one_of(st.just("rest"), st.lists(st.sampled_from(["road", "sky", "car", 0, 10, 18]),
                                                    min_size=1, max_size=3, unique=True))},  # fmt: skip
)
lines = st.one_of(
    st.text(max_size=40),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"label": label_names, "regions": st.lists(shaped_regions, min_size=1, max_size=3)}
    ).map(json.dumps),
    st.fixed_dictionaries(
        {"label": st.one_of(label_names, paths, json_values),
         "regions": st.one_of(st.lists(region_fields, max_size=3), json_values)},
    ).map(json.dumps),
)


@REPEATABLE
@given(text=lines)
def test_any_map_line_parses_or_is_a_named_map_error(tmp_path, text):
    try:
        mapped = parse_map_line(text, "map.jsonl line 1", str(tmp_path), "cityscapes", None)
    except ExemplarMapError as error:
        assert "map.jsonl line 1" in str(error)
        return
    assert isinstance(mapped, MappedLabel) and mapped.lent


@REPEATABLE
@given(text=lines)
def test_any_map_line_becomes_a_target_or_one_failure_row(tmp_path, text):
    """The Beam step that reads a line (parse, then decode the target's label map) yields
    exactly one target or one named failure: a path the filesystem refuses (a NUL byte, a
    folder) is the target's error, not a crashed pipeline."""
    (tmp_path / "folder_gtFine_labelIds.png").mkdir(exist_ok=True)
    target = tmp_path / "target_gtFine_labelTrainIds.png"
    if not target.exists():
        Image.fromarray(np.zeros((4, 8), np.uint8)).save(target)
    (out,) = list(_ParseLine(str(tmp_path / "map.jsonl"), "cityscapes", None).process((1, text)))
    if isinstance(out, MappedLabel):
        return
    failure = out.value
    assert isinstance(failure, FailedInput) and failure.error_code and failure.message
