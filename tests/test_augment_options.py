"""AugmentOptions: both spellings of every option, the --labels alias, the Flex Template
parameters, --help, misspelled options as errors, and the dtype default."""

import json
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipeline.options import (
    AugmentOptions,
    UnknownOptionError,
    alias_labels_flag,
    parse_augment_options,
    parse_size,
)
from tests.conftest import REPO
from transforms.synthesis_handler import SynthesisModelHandler


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


def test_a_misspelled_option_is_an_error_with_beams_suggestion():
    with pytest.raises(UnknownOptionError) as raised:
        parse_augment_options(["--runner=DirectRunner", "--samples-per-lable", "4", "--sed=3"])
    message = str(raised.value)
    assert "unknown option --samples-per-lable (did you mean --samples-per-label?)" in message
    assert "unknown option --sed (did you mean --seed?)" in message
    assert "'4'" not in message  # the misspelled option's value is not reported apart
    with pytest.raises(UnknownOptionError, match="unexpected argument 'stray'"):
        parse_augment_options(["stray"])


def test_beam_and_runner_options_are_known():
    argv = ["--labels", "/data", "--direct_num_workers=2", "--direct_running_mode",
            "multi_processing", "--flink_master=localhost:8081", "--spark_master_url", "x",
            "--dask_client_address", "127.0.0.1:8786"]  # fmt: skip
    # Dask's options parse when dask is installed, and are accepted by name when it is not.
    options = parse_augment_options(argv)
    assert options.label_maps == "/data" and options.max_failure_rate == 0.5
    with pytest.raises(UnknownOptionError, match="did you mean --dask_client_address"):
        parse_augment_options(["--dask_client_adress=127.0.0.1:8786"])


def test_max_failure_rate_is_a_fraction():
    assert parse_augment_options(["--max-failure-rate", "0.1"]).max_failure_rate == 0.1
    with pytest.raises(SystemExit):
        parse_augment_options(["--max-failure-rate", "1.5"])


def test_dtype_defaults_to_float16_on_cuda_only():
    assert AugmentOptions([]).dtype is None
    handler = SynthesisModelHandler("model", steps=1, guidance=1.0, device="cuda")
    assert handler._dtype == "float16"
    assert SynthesisModelHandler("model", steps=1, guidance=1.0)._dtype == "float32"
    explicit = SynthesisModelHandler("m", steps=1, guidance=1.0, device="cuda", dtype="bfloat16")
    assert explicit._dtype == "bfloat16"


def test_the_command_line_exits_2_on_a_misspelling_and_prints_only_that():
    done = subprocess.run(
        [sys.executable, "-m", "jobs.augment", "--runner=DirectRunner", "--samples-per-lable", "4"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "[augment] error: unknown option --samples-per-lable (did you mean --samples-per-label?)"
    )
    assert done.stdout == ""  # no start-up notices (BigQuery client, ...)
