"""Failure paths of the augment job, in real DirectRunner runs with a real (tiny) model whose
renderer is made to fail: one failing batch fails only its targets and a rerun renders its
shard again; failures above --max-failure-rate or in every model call exit non-zero after
the manifest; out of memory in the first batch stops the run naming --batch-size; the
temporaries a killed writer left and a remote model's local copy are removed."""

import os
import tarfile
from pathlib import Path

import pytest
import torch
import webdataset as wds
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

import pipeline.augment_graph
from amadapter.pipelines.model_factory import build_pipeline
from amadapter.world.export import export_world
from jobs.augment import EXIT_OK, EXIT_RUN_FAILED, main, run
from storage.label_sources import list_label_sources
from storage.manifest import read_manifest
from storage.fileio import local_model_directory
from transforms.renderer import Renderer
from transforms.synthesis_failures import SYNTHESIS_FAILED, BatchTooLargeError
from transforms.synthesis_handler import SynthesisModelHandler

TARGETS, SHARD_SIZE, BATCH_SIZE = 8, 4, 2


class FailingRenderer(Renderer):
    """The real renderer, except that a model call raises ``error`` for batches chosen by
    ``fails(keys, call number)``."""

    def __init__(self, pipe, fails, error):
        super().__init__(pipe)
        self._fails, self._error, self._calls = fails, error, 0

    def render(self, batch, *args):
        self._calls += 1
        if self._fails(sorted(r.target.key for r in batch), self._calls):
            raise self._error
        return super().render(batch, *args)


def failing_handler(fails, error):
    """A ``SynthesisModelHandler`` subclass whose model is a ``FailingRenderer``."""

    class FailingHandler(SynthesisModelHandler):
        def load_model(self):
            return FailingRenderer(Renderer.load(self._model)._pipe, fails, error)

    return FailingHandler


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    export_world(root, TARGETS, "test", 16, 32)
    export_world(root, 6, "val", 16, 32)
    model = tmp_path_factory.mktemp("model")
    build_pipeline("tiny").save_pretrained(str(model))
    first = list_label_sources(str(root), "cityscapes", "test")[0].key + "-s0"
    argv = [
        "--runner=DirectRunner", "--labels", str(root), "--split", "test",
        "--exemplars-split", "val", "--model", str(model), "--steps", "2", "--size", "16x32",
        "--shard-size", str(SHARD_SIZE), "--batch-size", str(BATCH_SIZE),
        "--image-format", "png", "--preview-count", "0",
    ]  # fmt: skip
    return {"argv": argv, "first_target": first}


def manifest(output: Path) -> dict[str, dict]:
    return {r["key"]: r for r in read_manifest(str(output / "manifest.parquet")).to_pylist()}


def tar_bytes(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_a_failing_batch_fails_only_its_targets_and_a_rerun_renders_its_shard(
    job, tmp_path, monkeypatch
):
    output = tmp_path / "out"
    chosen = job["first_target"]
    handler = failing_handler(lambda batch, _: chosen in batch, RuntimeError("device lost"))
    monkeypatch.setattr(pipeline.augment_graph, "SynthesisModelHandler", handler)
    # 1 or 2 of 8 inputs fail: under the default --max-failure-rate, so the job exits 0.
    assert main(job["argv"] + ["--output", str(output)]) == EXIT_OK

    rows = manifest(output)
    failed = {k for k, r in rows.items() if r["status"] == "failed"}
    assert chosen in failed and 1 <= len(failed) <= BATCH_SIZE  # that batch only
    assert {rows[k]["error_code"] for k in failed} == {SYNTHESIS_FAILED}
    assert all("device lost" in rows[k]["error"] for k in failed)
    written = {k for k, r in rows.items() if r["status"] == "written"}
    assert len(written) == TARGETS - len(failed)
    # The rest of the failing batch's shard is written and reads back with webdataset.
    tars = sorted(output.glob("aug-*.tar"))
    read_back = {
        str(tar): {s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)}
        for tar in tars
    }
    assert set().union(*read_back.values()) == written
    assert sorted(len(k) for k in read_back.values()) == [SHARD_SIZE - len(failed), SHARD_SIZE]
    before = {tar.name: tar_bytes(tar) for tar in tars}

    # A leftover of a writer killed in an earlier run; the rerun removes it when done.
    leftover = output / "aug-000007.tar.tmp-0123456789ab"
    leftover.write_bytes(b"partial")
    monkeypatch.undo()
    rerun = run(job["argv"] + ["--output", str(output)])
    assert rerun.skipped_shards == 1 and rerun.synthesized == SHARD_SIZE  # that shard again
    assert all(r["status"] == "written" for r in manifest(output).values())
    changed = [name for name, members in before.items() if tar_bytes(output / name) != members]
    assert len(changed) == 1  # the failing batch's shard, rendered again; the other untouched
    assert all(f"{k}.image.png" in tar_bytes(output / changed[0]) for k in failed)
    assert not leftover.exists() and not list(output.rglob("*.tmp-*"))


def test_failures_above_the_rate_exit_non_zero_after_the_manifest(
    job, tmp_path, monkeypatch, capsys
):
    handler = failing_handler(lambda batch, _: True, RuntimeError("weights on fire"))
    monkeypatch.setattr(pipeline.augment_graph, "SynthesisModelHandler", handler)
    output = tmp_path / "out"
    assert main(job["argv"] + ["--output", str(output)]) == EXIT_RUN_FAILED
    rows = manifest(output)
    assert len(rows) == TARGETS
    assert all(r["error_code"] == SYNTHESIS_FAILED for r in rows.values())
    err = capsys.readouterr().err
    assert "FAILED: 8 of 8 inputs failed (100%, more than --max-failure-rate 0.5)" in err
    assert "most common error: synthesis_failed (8 inputs)" in err and "weights on fire" in err
    # Every model call failed: non-zero even where the rate would allow it.
    lenient = job["argv"] + ["--output", str(tmp_path / "lenient"), "--max-failure-rate", "1"]
    assert main(lenient) == EXIT_RUN_FAILED
    assert "FAILED: every model call failed" in capsys.readouterr().err


def test_out_of_memory_in_the_first_batch_stops_the_run_naming_batch_size(
    job, tmp_path, monkeypatch, capsys
):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    handler = failing_handler(lambda _, call: call == 1, oom)
    monkeypatch.setattr(pipeline.augment_graph, "SynthesisModelHandler", handler)
    output = tmp_path / "out"
    assert main(job["argv"] + ["--output", str(output)]) == EXIT_RUN_FAILED
    err = capsys.readouterr().err
    assert "FAILED: out of cpu memory in the first model call (2 targets" in err
    assert "smaller --batch-size (e.g. --batch-size 1)" in err
    assert not (output / "manifest.parquet").exists()  # stopped: no run of failure rows
    with pytest.raises(BatchTooLargeError):  # the library call raises the named error
        run(job["argv"] + ["--output", str(tmp_path / "again")])


def test_out_of_memory_after_a_success_fails_that_batch_only(job, tmp_path, monkeypatch):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory")
    handler = failing_handler(lambda _, call: call == 2, oom)
    monkeypatch.setattr(pipeline.augment_graph, "SynthesisModelHandler", handler)
    output = tmp_path / "out"
    summary = run(job["argv"] + ["--output", str(output)])
    assert summary.failure_codes == {SYNTHESIS_FAILED: summary.failed} and summary.failed <= 2
    assert summary.written == TARGETS - summary.failed > 0


class LocalAsRemoteFileSystem(LocalFileSystem):
    """Beam's local file system under a scheme of its own, so that its paths count as
    remote (``FileSystems.get_scheme`` is not None) and are copied like gs:// ones."""

    PREFIX = "localremote://"

    @classmethod
    def scheme(cls):
        return "localremote"

    def _local(self, path: str) -> str:
        return path[len(self.PREFIX) :] if path.startswith(self.PREFIX) else path

    def has_dirs(self):
        return False  # match() lists by prefix, with the scheme kept

    def join(self, basepath, *paths):
        return self.PREFIX + os.path.join(self._local(basepath), *paths)

    def _list(self, dir_or_prefix):
        for folder, _, files in os.walk(self._local(dir_or_prefix)):
            for name in files:
                path = os.path.join(folder, name)
                yield FileMetadata(self.PREFIX + path, os.path.getsize(path), 0.0)

    def exists(self, path):
        return os.path.exists(self._local(path))

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)


def test_a_remote_model_is_copied_for_the_load_and_the_copy_removed(tmp_path):
    model = tmp_path / "model"
    build_pipeline("tiny").save_pretrained(str(model))
    with local_model_directory(LocalAsRemoteFileSystem.PREFIX + str(model)) as local:
        copied = Path(local)
        assert copied != model and (copied / "unet" / "config.json").is_file()
        renderer = Renderer.load(local)
    assert not copied.exists()
    assert renderer.model_hash() == Renderer.load(str(model)).model_hash()
