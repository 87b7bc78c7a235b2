"""AugmentOptions: both spellings of every option, the --labels alias, the Flex Template
parameters, and --help."""

import json

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipeline.options import AugmentOptions, alias_labels_flag, parse_size
from tests.conftest import REPO


def test_dash_and_underscore_spellings_parse_alike():
    dashed = AugmentOptions(["--samples-per-label", "3", "--exemplar-topk=4", "--share-model"])
    underscored = AugmentOptions(
        ["--samples_per_label=3", "--exemplar_topk", "4", "--share_model=true"]
    )
    for options in (dashed, underscored):
        assert (options.samples_per_label, options.exemplar_topk, options.share_model) == (
            3,
            4,
            True,
        )


def test_labels_alias_does_not_collide_with_dataflow_job_labels():
    argv = alias_labels_flag(["--labels", "gs://b/cs", "--label", "team=perception"])
    options = AugmentOptions(argv)
    job_labels = options.view_as(GoogleCloudOptions).labels
    assert options.label_maps == "gs://b/cs" and job_labels == ["team=perception"]
    assert AugmentOptions(alias_labels_flag(["--labels=/data"])).label_maps == "/data"


def test_options_survive_the_trip_to_workers():
    sent = AugmentOptions(["--size", "32x64", "--share-model", "--steps", "3"])
    received = AugmentOptions.from_dictionary(sent.get_all_options(drop_default=True))
    assert (received.size, received.share_model, received.steps) == ("32x64", True, 3)
    assert parse_size(received.size) == (32, 64)
    with pytest.raises(ValueError, match="HxW"):
        parse_size("512")


def test_every_flex_template_parameter_is_an_option():
    metadata = json.loads((REPO / "deploy" / "dataflow" / "metadata.json").read_text())
    known = AugmentOptions([]).get_all_options(current_only=True)
    assert {p["name"] for p in metadata["parameters"]} <= set(known)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        AugmentOptions(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "--label-maps",
        "--samples-per-label",
        "--exemplar-topk",
        "--batch-size",
        "--model-copies",
    ):
        assert flag in text
