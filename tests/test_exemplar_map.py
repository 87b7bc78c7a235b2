"""``--exemplar-map``: a user says which exemplar lends which part of each target.

A real DirectRunner job on world files and a tiny checkpoint: good lines render exactly
what the pipeline renders with those regions; every bad line is one manifest row with
its named error, and the run goes on."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from amadapter.pipelines.exemplar_regions import ExemplarRegion
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs.augment import run
from transforms.expand_samples import sample_seed
from storage.manifest import read_manifest
from storage.input_reads import read_photo
from transforms.renderer import Renderer

H, W = 16, 32
ROAD, SKY = 0, 10


def _line(label, *regions) -> str:
    return json.dumps({"label": label, "regions": list(regions)})


def _region(frame: str, **lends) -> dict:
    return {
        "photo": f"leftImg8bit/val/world/{frame}_leftImg8bit.png",
        "label": f"gtFine/val/world/{frame}_gtFine_labelTrainIds.png",
        **lends,
    }


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    targets = export_world(root, 4, "test", H, W)
    pool = export_world(root, 3, "val", H, W)
    label = "gtFine/test/world/{}_gtFine_labelTrainIds.png".format
    left = np.zeros((H, W), np.uint8)
    left[:, : W // 2] = 255
    Image.fromarray(left).save(root / "left.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "small.png")
    lines = {
        "classes": _line(
            label(targets[0]),
            _region(pool[0], classes=["road", "sky"]),
            _region(pool[1], classes="rest"),
        ),
        "mask": _line(label(targets[1]), _region(pool[2], mask="left.png"), _region(pool[1], classes="rest")),
        "one": _line(label(targets[2]), _region(pool[0], classes="rest")),
        "unknown_class": _line(label(targets[3]), _region(pool[0], classes=["spaceship"])),
        "overlap": _line(
            label(targets[3]), _region(pool[0], classes=["road"]), _region(pool[1], classes=[ROAD])
        ),
        "not_json": '{"label": "x.png", "regions": [',
        "missing_photo": _line(
            label(targets[3]), {**_region(pool[0], classes="rest"), "photo": "gone.png"}
        ),
        "mask_size": _line(label(targets[3]), _region(pool[0], mask="small.png"), _region(pool[1], classes="rest")),
    }
    map_file = root / "map.jsonl"
    map_file.write_text("\n".join([*lines.values(), lines["one"]]) + "\n")  # "one" twice: one input
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    output = str(tmp_path_factory.mktemp("out"))
    argv = [
        "--runner=DirectRunner", "--exemplar-map", str(map_file), "--model", str(model),
        "--steps", "2", "--size", f"{H}x{W}", "--batch-size", "1", "--image-format", "png",
        "--preview-count", "0", "--output", output,
    ]  # fmt: skip
    summary = run(argv)
    rows = read_manifest(os.path.join(output, "manifest.parquet")).to_pylist()
    return {"root": root, "lines": lines, "summary": summary, "rows": rows, "output": output,
            "model": str(model), "argv": argv, "pool": pool}  # fmt: skip


def _samples(job) -> dict:
    """The good lines' samples by line name (each good line has its own target): json + png."""
    line_of = {json.loads(job["lines"][n])["label"]: n for n in ("classes", "mask", "one")}
    samples = {}
    tars = sorted(str(p) for p in Path(job["output"]).glob("aug-*.tar"))
    for sample in wds.WebDataset(tars, shardshuffle=False):
        meta = json.loads(sample["json"])
        name = next(n for label, n in line_of.items() if meta["source"].endswith(label))
        samples[name] = {**meta, "key": sample["__key__"], "png": sample["image.png"]}
    return samples


def test_every_line_is_one_input_written_or_failed_by_name(job):
    summary, rows = job["summary"], job["rows"]
    assert summary.inputs == len(rows) == len(job["lines"]) == summary.written + summary.failed
    names = list(job["lines"])
    label = {n: json.loads(job["lines"][n])["label"] for n in names if n != "not_json"}

    def line(name):
        return f"map.jsonl line {names.index(name) + 1}"

    got = sorted((r["source"].rsplit("/", 1)[-1], r["status"], r["error_code"]) for r in rows)
    base = {n: label[n].rsplit("/", 1)[-1] for n in label}
    assert got == sorted([
        (base["classes"], "written", None), (base["mask"], "written", None),
        (base["one"], "written", None),
        (line("unknown_class"), "failed", "bad_exemplar_map"),
        (line("overlap"), "failed", "bad_exemplar_map"),
        (line("not_json"), "failed", "bad_exemplar_map"),
        (base["missing_photo"], "failed", "unreadable_image"),
        (base["mask_size"], "failed", "bad_exemplar_regions"),
    ])  # fmt: skip
    errors = {r["error"] for r in rows if r["error"]}
    assert any("spaceship" in e for e in errors)
    assert any("overlapping assignments" in e and "road" in e for e in errors)
    assert any("gone.png" in e for e in errors)
    assert any("mask is 8x8" in e for e in errors)


def test_sample_json_records_every_exemplar_and_what_it_lent(job):
    metas = _samples(job)
    pool = job["pool"]
    lent = [(Path(e["photo"]).name.split("_leftImg8bit")[0], e["lends"]) for e in metas["classes"]["exemplars"]]
    assert lent == [(pool[1], "rest"), (pool[0], {"classes": ["road", "sky"]})]
    assert metas["classes"]["exemplar"] == metas["classes"]["exemplars"][0]
    mask = metas["mask"]["exemplars"]
    assert mask[1]["lends"] == {"mask": str(job["root"] / "left.png")} and mask[0]["lends"] == "rest"
    assert [e["lends"] for e in metas["one"]["exemplars"]] == ["rest"]
    assert all(e["score"] is None for m in metas.values() for e in m["exemplars"])


def test_mapped_regions_render_as_the_pipeline_does(job):
    """The job's image of a mapped line == a direct pipeline call with those regions."""
    renderer = Renderer.load(job["model"])
    root = job["root"]
    for name, meta in _samples(job).items():
        exemplars = [e["photo"] for e in meta["exemplars"]]
        images = [read_photo(p) for p in exemplars]
        labels = [np.asarray(Image.open(e["label"])) for e in meta["exemplars"]]
        if name == "classes":
            assignment = [[ExemplarRegion(0), ExemplarRegion(1, (ROAD, SKY))]]
        elif name == "mask":
            mask = np.asarray(Image.open(root / "left.png")) > 0
            assignment = [[ExemplarRegion(0), ExemplarRegion(1, mask=mask)]]
        else:
            assignment = [0]
        target = np.asarray(Image.open(meta["source"]))
        expected = renderer._pipe(
            target_labels=[target], exemplar_images=images, exemplar_labels=labels,
            assignment=assignment, num_inference_steps=2, guidance_scale=7.5,
            seeds=[sample_seed(meta["key"], 0)], height=H, width=W, output_type="np",
        ).images  # fmt: skip
        expected = (np.clip(expected, 0, 1) * 255).round().astype(np.uint8)[0]
        got = np.asarray(Image.open(io.BytesIO(meta["png"])))
        assert np.array_equal(got, expected), name


def test_the_summary_says_the_preview_was_off_not_that_nothing_was_written(job):
    assert job["summary"].written > 0
    assert job["summary"].lines()[-1] == "preview  (off: --preview-count 0)"


def test_rerun_renders_nothing(job):
    summary = run(job["argv"])
    assert summary.model_calls == 0 and summary.written == job["summary"].written


def test_one_label_map_lent_with_different_photos_is_different_exemplars(tmp_path):
    """Three lines lend one exemplar label map with three photos (its own, another frame's,
    a missing one) in one batch: each target reads its own photo, and only the line whose
    photo is missing fails, naming that photo. The preview is on, as in the README."""
    targets = export_world(tmp_path, 3, "test", H, W)
    pool = export_world(tmp_path, 2, "val", H, W)
    label = "gtFine/test/world/{}_gtFine_labelTrainIds.png".format
    photos = {
        targets[0]: f"leftImg8bit/val/world/{pool[0]}_leftImg8bit.png",
        targets[1]: "gone.png",
        targets[2]: f"leftImg8bit/val/world/{pool[1]}_leftImg8bit.png",
    }
    lines = [_line(label(t), {**_region(pool[0], classes="rest"), "photo": p}) for t, p in photos.items()]
    (tmp_path / "map.jsonl").write_text("\n".join(lines) + "\n")
    model = tmp_path / "model"
    build_pipeline("tiny").save_pretrained(str(model))
    output = tmp_path / "out"
    summary = run([
        "--runner=DirectRunner", "--exemplar-map", str(tmp_path / "map.jsonl"), "--model", str(model),
        "--steps", "1", "--size", f"{H}x{W}", "--batch-size", "4", "--image-format", "png",
        "--output", str(output),
    ])  # fmt: skip
    rows = {Path(r["source"]).name: r for r in read_manifest(str(output / "manifest.parquet")).to_pylist()}
    status = {t: rows[Path(label(t)).name]["status"] for t in targets}
    assert status == {targets[0]: "written", targets[1]: "failed", targets[2]: "written"}
    failed = rows[Path(label(targets[1])).name]
    assert failed["error_code"] == "unreadable_image" and "gone.png" in failed["error"]
    metas = [json.loads(s["json"]) for s in wds.WebDataset(sorted(map(str, output.glob("aug-*.tar"))), shardshuffle=False)]
    read = {Path(m["source"]).name: Path(m["exemplar"]["photo"]).name for m in metas}
    assert read == {Path(label(t)).name: Path(photos[t]).name for t in (targets[0], targets[2])}
    # The preview (on, as in the README's command) captions named exemplars, which have no score.
    page = Path(summary.preview).read_text()
    assert page.count("named in the exemplar map") == 2 and "score" not in page
