"""jobs.evaluate end to end: real shards written by the project's shard writer, real PNG
photos, tiny random models (the project's segmenter, a transformers CLIP); eval.json,
samples.jsonl and the HTML report read back."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from amadapter import world
from amadapter.io.labels import NUM_CLASSES
from amadapter.models.segmenter import SmallSegmenter
from jobs.evaluate import main
from storage.records import Sample
from storage.shards import write_shard

SIZE = (32, 64)
MISSING_EXEMPLAR = "/nonexistent/exemplar.png"


def _save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two PNG shards of 4 world scenes each (one sample's exemplar photo is missing), the
    same 8 photos as a real folder, 8 other world photos as a second one, and tiny models."""
    root = tmp_path_factory.mktemp("evaluate")
    seeds = world.split_seeds("test", 16)
    labels_of = {}
    for shard in range(2):
        samples = []
        for i in range(4):
            seed = seeds[4 * shard + i]
            photo, ids = world.scene(seed, seed, *SIZE)
            labels_of[f"scene-{seed:06d}"] = ids
            _save_png(root / "same" / f"{seed}.png", photo)
            exemplar_photo, _ = world.scene(seed + 1, seeds[8 + i], *SIZE)
            exemplar = _save_png(root / "exemplars" / f"{seed}.png", exemplar_photo)
            meta = {"source": f"world/{seed}",
                    "exemplar": {"key": f"ex-{seed}", "photo": MISSING_EXEMPLAR if i == 3 else exemplar}}
            samples.append(Sample(f"scene-{seed:06d}", photo, ids, meta))
        write_shard(str(root / "shards"), "aug", shard, samples, image_format="png")
    for seed in seeds[8:]:
        _save_png(root / "other" / f"{seed}.png", world.scene(seed, seed + 99, *SIZE)[0])
    torch.manual_seed(0)
    save_file(SmallSegmenter(width=8).state_dict(), str(root / "segmenter.safetensors"))
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=8))
    clip.save_pretrained(root / "clip")
    return {"root": root, "shards": str(root / "shards" / "aug-*.tar"), "labels": labels_of}


def _run(inputs, out, *options):
    return main([inputs["shards"], "--out", str(out), "--batch-size", "3", "--threads", "1",
                 "--kid-subsets", "5", *options])


def test_all_figures_report_and_determinism(inputs, tmp_path):
    root = inputs["root"]
    options = ["--real", str(root / "other"), "--real-dataset", "folder",
               "--features", str(root / "segmenter.safetensors"), "--clip", str(root / "clip"),
               "--segmenter", str(root / "segmenter.safetensors"), "--worst", "3"]
    summary = _run(inputs, tmp_path / "a", *options)
    assert summary["samples"] == 8 and summary["size"] == list(SIZE)
    fid, kid = summary["fid"], summary["kid"]
    assert "project segmenter encoder" in fid["feature_extractor"] and fid["feature_dim"] == 32
    assert fid["generated_count"] == fid["real_count"] == 8 and fid["value"] > 0
    assert kid["subset_size"] == 8 and np.isfinite(kid["mean"])
    clip = summary["clip_i"]
    assert clip["count"] == 6 and clip["without_exemplar"] == 2 and -1 <= clip["mean"] <= 1
    assert [s["code"] for s in summary["skipped"]] == ["unreadable_image"]
    assert summary["skipped"][0]["path"] == MISSING_EXEMPLAR
    assert 0 <= summary["layout"]["miou"] <= 1 and summary["layout"]["segmenter_kind"] == "project"
    # per-class pixels are the target labels' own counts
    counts = np.bincount(np.concatenate([l.ravel() for l in inputs["labels"].values()]), minlength=256)
    assert [c["pixels"] for c in summary["classes"]] == counts[:NUM_CLASSES].tolist()
    worst = summary["worst"]
    assert len(worst) == 3 and [w["miou"] for w in worst] == sorted(w["miou"] for w in worst)
    rows = [json.loads(l) for l in (tmp_path / "a" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and min(r["miou"] for r in rows) == worst[0]["miou"]
    report = (tmp_path / "a" / "report.html").read_text()
    assert report.count("<svg") == 1 and report.count("data:image/png") == 3 * 3  # 3 tiles x 3
    assert json.loads((tmp_path / "a" / "eval.json").read_text()) == json.loads(json.dumps(summary))
    _run(inputs, tmp_path / "b", *options)  # same inputs, same bytes
    assert (tmp_path / "a" / "eval.json").read_bytes() == (tmp_path / "b" / "eval.json").read_bytes()


def test_fid_of_a_set_against_itself_is_zero(inputs, tmp_path):
    root = inputs["root"]
    summary = _run(inputs, tmp_path, "--real", str(root / "same"), "--real-dataset", "folder",
                   "--features", str(root / "segmenter.safetensors"))
    assert summary["fid"]["value"] == pytest.approx(0, abs=1e-6)
    assert summary["clip_i"] is None and summary["layout"] is None


@pytest.mark.parametrize("options, message", [
    (["--real", "x"], "--real needs --features"),
    (["--segmenter", "/nonexistent"], "not a segmentation model"),
])
def test_bad_options_exit_2(inputs, tmp_path, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        _run(inputs, tmp_path, *options)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_damaged_shard_is_skipped_by_name(inputs, tmp_path):
    good = sorted((inputs["root"] / "shards").glob("aug-*.tar"))
    folder = tmp_path / "shards"
    folder.mkdir()
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "aug-000002.tar").write_bytes(good[0].read_bytes()[:1500])  # cut inside a member
    summary = main([str(folder / "aug-*.tar"), "--out", str(tmp_path / "out"), "--threads", "1"])
    damaged = [s for s in summary["skipped"] if s["code"] == "unreadable_shard"]
    assert [s["path"] for s in damaged] == [str(folder / "aug-000002.tar")]
    assert summary["samples"] == 8  # the two good shards, whole
