"""The augment job's launch checks: wrong roots and sizes stop the job before the pipeline
starts (nothing written), the size comes from the model's config files alone, and a
trained checkpoint records the size it was trained at."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs import train_structure as train_structure_job
from jobs.augment import EXIT_BAD_LAUNCH, main, run
from pipeline.augment_graph import DEFAULT_MODEL_DIR, resolve_inputs
from pipeline.launch_checks import LaunchError, check_launch, nearest_valid_sizes, output_size
from pipeline.options import parse_augment_options
from tests.conftest import CITYSCAPES_ROOT, REPO
from transforms.renderer import Renderer

# Stable Diffusion 1.5's own config values (runwayml/stable-diffusion-v1-5), without weights.
SD15_UNET = {"block_out_channels": [320, 640, 1280, 1280], "sample_size": 64}
SD15_VAE = {"block_out_channels": [128, 256, 512, 512]}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    return str(model)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    export_world(root, 2, "test", 16, 32)
    export_world(root, 2, "val", 16, 32)
    return root


def config_only_checkpoint(root: Path, unet: dict, vae: dict) -> str:
    """A checkpoint directory holding only its config files: what the launcher reads."""
    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "AMAdapterPipeline"}))
    (root / "unet" / "config.json").write_text(json.dumps(unet))
    (root / "vae" / "config.json").write_text(json.dumps(vae))
    return str(root)


def test_nearest_valid_sizes():
    assert nearest_valid_sizes(720, 1280, 64) == ["704x1280", "768x1280"]
    assert nearest_valid_sizes(100, 200, 16) == ["96x192", "112x208"]
    assert nearest_valid_sizes(10, 64, 16) == ["16x64"]  # rounding down would leave nothing


def test_a_stable_diffusion_size_is_checked_from_its_config_files(tmp_path):
    model = config_only_checkpoint(tmp_path / "sd15", SD15_UNET, SD15_VAE)
    assert output_size(None, model) == (512, 512)  # SD1.5's sample_size, until trained
    assert output_size("512x1024", model) == (512, 1024)
    with pytest.raises(LaunchError, match="multiple of 64.*use --size 704x1280 or 768x1280"):
        output_size("720x1280", model)
    with pytest.raises(LaunchError, match="HxW"):
        output_size("720", model)


def test_the_bundled_model_defaults_to_the_size_it_was_trained_at():
    assert output_size(None, DEFAULT_MODEL_DIR) == (64, 128)  # 2:1, as the world's maps


@pytest.mark.parametrize("model", ["tiny", "demo"])
def test_config_geometry_matches_the_loaded_model(model, tiny_model):
    directory = tiny_model if model == "tiny" else DEFAULT_MODEL_DIR
    renderer = Renderer.load(directory)
    grid = renderer._pipe.size_multiple
    assert output_size(None, directory) == renderer.native_size()
    height, width = renderer.native_size()
    with pytest.raises(LaunchError, match=f"not a multiple of {grid}, "):
        output_size(f"{height + grid // 2}x{width}", directory)


def test_stage1_training_records_its_size_and_the_job_defaults_to_it(tmp_path):
    train_structure_job.main(
        ["--model", "tiny", "--size", "32x128", "--batch-size", "1", "--steps", "1",
         "--vae-steps", "0", "--run-dir", str(tmp_path / "run"), "--output", str(tmp_path / "m")]
    )  # fmt: skip
    unet = json.loads((tmp_path / "m" / "unet" / "config.json").read_text())
    assert unet["sample_size"] == [16, 64]  # latents of the tiny VAE (factor 2)
    assert output_size(None, str(tmp_path / "m")) == (32, 128)


def job_argv(world: Path, model: str, output: Path) -> list[str]:
    return [
        "--runner=DirectRunner", "--labels", str(world), "--split", "test",
        "--exemplars-split", "val", "--model", model, "--steps", "1", "--output", str(output),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        (["--labels", "{missing}"], r"--labels .*missing: no such directory"),
        (["--labels", "{empty}"], r"--labels .*empty: holds no cityscapes label maps"),
        (["--split", "train"], r"--labels .*: holds no cityscapes label maps \(split 'train'\)"),
        (["--exemplars", "{empty}"], r"--exemplars .*empty: holds no cityscapes label maps"),
        (["--index", "{missing}"], r"--index .*missing: does not exist"),
        (["--size", "18x32"], r"--size 18x32 is not a multiple of 4.*use --size 16x32 or 20x32"),
        (["--batch-size", "0"], r"--batch-size must be at least 1, got 0"),
        (["--model-copies", "0"], r"--model-copies must be at least 1, got 0"),
        (["--exemplars-per-target", "0"], r"--exemplars-per-target must be at least 1, got 0"),
        (["--exemplar-map", "{missing}"], r"--exemplar-map names the targets .*; drop --labels"),
    ],
)
def test_bad_launch_stops_before_the_pipeline_starts(world, tiny_model, tmp_path, change, message):
    (tmp_path / "empty").mkdir()
    values = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    argv = job_argv(world, tiny_model, tmp_path / "out")
    argv += [a.format(**values) for a in change]
    with pytest.raises(LaunchError, match=message):
        run(argv)
    assert not list((tmp_path / "out").glob("*.tar"))  # nothing was rendered or written


def test_real_cityscapes_root_passes(tiny_model):
    options = parse_augment_options(
        ["--labels", str(CITYSCAPES_ROOT), "--split", "val", "--model", tiny_model]
    )
    assert check_launch(options, resolve_inputs(options)) == (32, 64)


def test_a_missing_exemplar_map_stops_before_the_pipeline_starts(tiny_model, tmp_path):
    argv = ["--runner=DirectRunner", "--exemplar-map", str(tmp_path / "map.jsonl"),
            "--model", tiny_model, "--output", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(LaunchError, match=r"--exemplar-map .*map.jsonl: no such file"):
        run(argv)
    with pytest.raises(LaunchError, match=r"--dataset folder needs --label-format"):
        run(argv + ["--dataset", "folder"])


def test_an_empty_exemplar_map_is_refused_like_an_empty_root(world, tiny_model, tmp_path):
    """Both have no inputs: exit 2 before the pipeline starts, naming the file or root."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "map.jsonl").write_text("\n  \n\n")  # blank lines are not lines
    common = ["--runner=DirectRunner", "--model", tiny_model, "--output", str(tmp_path / "out")]
    assert main(common + ["--exemplar-map", str(tmp_path / "map.jsonl")]) == EXIT_BAD_LAUNCH
    assert main(common + ["--labels", str(tmp_path / "empty")]) == EXIT_BAD_LAUNCH
    with pytest.raises(LaunchError, match=r"--exemplar-map .*map.jsonl: holds no lines"):
        run(common + ["--exemplar-map", str(tmp_path / "map.jsonl")])


def test_an_empty_root_names_the_split_it_searched(tiny_model, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = ["--labels", str(tmp_path / "empty"), "--model", tiny_model, "--output", str(tmp_path / "out")]
    with pytest.raises(LaunchError, match=r"holds no cityscapes label maps \(split 'train'\)"):
        run(argv)
    with pytest.raises(LaunchError, match=r"holds no folder label maps \(the whole root\)"):
        run(argv + ["--dataset", "folder", "--label-format", "ids"])


def test_dask_runner_without_dask_is_one_line_and_exit_2(world, tiny_model, tmp_path):
    """Where the dask extra is not installed (its modules made unimportable here), asking
    for DaskRunner says so in one line, no traceback."""
    blocked = "import sys; sys.modules.update(dask=None, distributed=None); "
    argv = job_argv(world, tiny_model, tmp_path / "out")[1:] + [
        "--runner=DaskRunner", "--dask_client_address", "127.0.0.1:1",
    ]
    code = blocked + f"from jobs.augment import main; sys.exit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == EXIT_BAD_LAUNCH, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "[augment] error: --runner=DaskRunner needs dask.distributed, which is not installed here"
    )
