"""AugmentOptions: both spellings of every option, the --labels alias, the Flex Template
parameters, --help (grouped, defaults shown, runners listed), misspelled options and bad
values as errors, and the dtype default."""

import argparse
import json
import re
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipeline.option_values import OptionValueError, parse_size
from pipeline.options import (
    OPTION_GROUPS,
    AugmentOptions,
    UnknownOptionError,
    alias_labels_flag,
    parse_augment_options,
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


def _flex_parameters() -> dict:
    metadata = json.loads((REPO / "deploy" / "dataflow" / "metadata.json").read_text())
    return {p["name"]: p for p in metadata["parameters"]}


def test_flex_template_parameters_are_exactly_the_job_options():
    """Both ways: a parameter the job does not know is dropped by Beam; an option without a
    parameter cannot be set from the template."""
    known = {a.dest for a in _job_actions()}
    assert set(_flex_parameters()) == known


def test_flex_template_regexes_accept_the_defaults_of_optional_parameters():
    """A user who types an optional parameter's default is not refused by its regex
    (required ones, label_maps and output, are buckets on Dataflow: no local default)."""
    parameters = _flex_parameters()
    for action in _job_actions():
        parameter = parameters[action.dest]
        if not parameter["isOptional"] or action.default is None:
            continue
        text = str(action.default).lower() if isinstance(action.default, bool) else str(action.default)
        assert all(re.fullmatch(r, text) for r in parameter.get("regexes", [])), (action.dest, text)


def test_a_flex_template_passes_every_option_as_name_equals_value():
    """What the launcher passes (``--name=value``, booleans as true/false) parses."""
    options = AugmentOptions(["--overwrite=true", "--share_model=false", "--preview_count=0"])
    assert (options.overwrite, options.share_model, options.preview_count) == (True, False, 0)
    assert AugmentOptions(["--overwrite"]).overwrite is True and AugmentOptions([]).overwrite is False


def _job_actions() -> list:
    parser = argparse.ArgumentParser()
    AugmentOptions._add_argparse_args(parser)
    return [a for a in parser._actions if a.dest != "help"]


def test_help_shows_the_job_options_first_in_groups_with_defaults_then_runners_then_beam():
    done = subprocess.run(
        [sys.executable, "-m", "jobs.augment", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    titles = [title + ":" for title, _ in OPTION_GROUPS]
    positions = [text.index("\n" + t + "\n") for t in titles]
    runners, beam = text.index("runners (--runner"), text.index("Beam's own options:")
    assert positions == sorted(positions) and positions[-1] < runners < beam
    for action in _job_actions():  # every job option is in the job's part, once
        flag = action.option_strings[0]
        assert text.count(f"\n  {flag} ") + text.count(f"\n  {flag}\n") == 1, flag
        assert text.index(f"\n  {flag}") < runners, flag
    for name in ("DirectRunner", "multi_threading", "multi_processing", "DaskRunner",
                 "--dask_client_address", "DataflowRunner", "FlinkRunner", "SparkRunner"):  # fmt: skip
        assert name in text[runners:beam], name
    for beam_flag in ("--runner RUNNER", "--direct_num_workers", "--temp_location"):
        assert beam_flag in text[beam:], beam_flag


def test_every_job_option_says_its_default():
    """A default is shown by the help page, or, where it depends on other choices, said in
    the option's own help; bare flags (off unless given) need neither."""
    for action in _job_actions():
        if action.nargs == 0:
            continue
        assert action.default is not None or "default" in action.help.lower(), action.option_strings[0]


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
    with pytest.raises(OptionValueError, match="between 0 and 1"):
        parse_augment_options(["--max-failure-rate", "1.5"])


FLOAT_OPTIONS = ("--guidance", "--filter-margin", "--filter-min-kept", "--max-failure-rate")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "infinity"])
@pytest.mark.parametrize("flag", FLOAT_OPTIONS)
def test_no_float_option_takes_a_non_number(flag, value):
    with pytest.raises(OptionValueError, match=f"{flag}.*finite|{flag}.*between"):
        parse_augment_options([f"{flag}={value}"])


def test_every_float_option_is_checked_finite():
    """The list above is every float-valued option of the job (a new one must join it)."""
    floats = {a.option_strings[0] for a in _job_actions() if isinstance(a.default, float)}
    assert floats == set(FLOAT_OPTIONS)


def test_a_bad_value_exits_2_with_one_named_error_line():
    done = subprocess.run(
        [sys.executable, "-m", "jobs.augment", "--guidance", "nan"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1] == (
        "[augment] error: argument --guidance: expected a finite number, got 'nan'"
    )


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
