"""The render fingerprint: what a shard was rendered with, recorded in its stats file.

An output is never filled with shards of two fingerprints: a rerun whose
fingerprint differs from a finished shard's stops on the launcher, before any
worker or model work, with ``FingerprintMismatchError`` (``transforms.skip_finished``).

Fields (``render_fingerprint``):

- ``model_sha256``: sha256 over the relative path and bytes of every file of the
  checkpoint directory (weights, configs, scheduler), in path order. Read through
  ``FileSystems`` on the launcher without loading the model (for a Stable
  Diffusion 1.5 sized checkpoint, about 4 GB read once per launch). It is not
  the weights hash that samples record as provenance (``model_hash``, computed
  from the loaded tensors on the workers).
- ``steps``, ``guidance``, ``size`` (``HxW`` as given, or ``"model"``: the
  checkpoint's own, which ``model_sha256`` covers), ``seed``, ``dtype``,
  ``image_format``.
- ``mode``: how targets read their exemplars (``--mode``); ``prompt``: the pipeline's
  default (the job has no option for it; a checkpoint with stored prompt embeddings
  renders its own, covered by ``model_sha256``).
- ``exemplar_path``: how exemplar rows enter the denoising (``amadapter.pipelines.exemplar_start``).
- ``quality_filter``: None without ``--filter-segmenter``; else the filter's model
  sha256, margin, min-kept share, where its reference losses were measured and
  the losses themselves (``transforms.quality_filter.QualityFilterSpec.fingerprint``),
  so another filter, rule or reference is another fingerprint.
- ``pool_labels``: None when the exemplars' label maps are the pool's own; else who
  predicted them (``--pool-labels-from``: the segmenter and its sha256,
  ``storage.unlabelled_pool``), so another labeller is another fingerprint.
- ``exemplar_topk``, ``exemplars_per_target``, ``unassigned`` and ``exemplar_pool``:
  the exemplar settings. The pool is named by what the user gave (``--index``, the
  ``--exemplars`` root with its dataset, split and label format, or the
  ``--exemplar-map`` file), not by its content: a pool that grows between
  scheduled runs may serve new shards with new exemplars, like a grown input set;
  another pool is another fingerprint.

Not in it: samples per label, shard size, batch size, workers and threads (they
change which inputs exist or how work is spread, not how one sample is rendered).
"""

from __future__ import annotations

import hashlib

from storage.fileio import list_files, open_file

_CHUNK = 1 << 20


class FingerprintMismatchError(Exception):
    """The output holds finished shards rendered with another fingerprint."""

    def __init__(self, output: str, shard: str, differences: dict[str, tuple]):
        self.output, self.shard, self.differences = output, shard, differences
        fields = "; ".join(
            f"{name}: {recorded!r} in the output, {current!r} now"
            for name, (recorded, current) in sorted(differences.items())
        )
        super().__init__(
            f"{output} holds finished shards rendered with other settings (first: {shard}): "
            f"{fields}. Nothing was rendered. To proceed, write to a new --output, or pass "
            "--overwrite to discard this output's shards and render them all again."
        )


def render_fingerprint(
    model: str,
    steps: int,
    guidance: float,
    size: str | None,
    seed: int,
    dtype: str,
    image_format: str,
    exemplar_topk: int,
    exemplar_pool: str,
    exemplar_path: str,
    exemplars_per_target: int,
    unassigned: str,
    mode: str,
    quality_filter: dict | None = None,
    pool_labels: dict | None = None,
) -> dict:
    """The fingerprint dict of a run (JSON values); see the module docstring."""
    from amadapter.pipelines.pipeline_amadapter import DEFAULT_PROMPT

    return {
        "model_sha256": checkpoint_sha256(model),
        "steps": int(steps),
        "guidance": float(guidance),
        "size": size or "model",
        "seed": int(seed),
        "dtype": dtype,
        "mode": mode,
        "prompt": DEFAULT_PROMPT,
        "image_format": image_format,
        "exemplar_topk": int(exemplar_topk),
        "exemplar_pool": exemplar_pool,
        "exemplar_path": exemplar_path,
        "exemplars_per_target": int(exemplars_per_target),
        "unassigned": unassigned,
        "quality_filter": quality_filter,
        "pool_labels": pool_labels,
    }


def checkpoint_sha256(directory: str) -> str:
    """sha256 over (relative path, bytes) of every file under ``directory``, in path order."""
    root = directory.rstrip("/")
    digest = hashlib.sha256()
    paths = list_files(f"{root}/**")
    if not paths:
        raise FileNotFoundError(f"no files under the checkpoint {directory}")
    for path in paths:
        digest.update(path[len(root) + 1 :].encode() + b"\0")
        with open_file(path) as stream:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint_differences(recorded: dict | None, current: dict) -> dict[str, tuple]:
    """Field -> (recorded, current) for every field that differs; a shard written before
    fingerprints were recorded differs in every field."""
    recorded = recorded or {}
    names = set(recorded) | set(current)
    return {
        n: (recorded.get(n), current.get(n)) for n in names if recorded.get(n) != current.get(n)
    }
