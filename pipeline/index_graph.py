"""The exemplar index build as a Beam graph (``python -m jobs.build_index --runner=...``).

    todo_files = write_todo(work_dir, sources)      # on the launcher
    add_index_build(pipeline, todo_files, index_path, work_dir, run, buckets)

The launcher lists the pool and drops the entries the index already holds, as the
single-process build does (``amadapter.retrieval.build``), and writes what is left
in files of ``TODO_PER_FILE`` entries under the work folder, so the graph carries
file names, not a million sources. The graph reads them, spreads the entries over
the workers and writes the index parts (``transforms.index_parts``); the
launcher then commits them (``jobs.build_index``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Iterable

import apache_beam as beam

from storage.exemplar_pool import pool_labels
from storage.fileio import read_bytes, write_atomically
from transforms.index_parts import WriteIndexParts
from storage.records import LabelSource

TODO_PER_FILE = 10_000  # sources per work file: one element of the graph's Create each


def write_todo(work_dir: str, sources: Iterable[LabelSource]) -> list[str]:
    """Write ``sources`` as JSON Lines files under ``work_dir``; returns their paths."""
    paths, chunk = [], []

    def flush():
        path = f"{work_dir.rstrip('/')}/todo-{len(paths):05d}.jsonl"
        lines = "".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in chunk)
        write_atomically(path, lines.encode(), "application/json")
        paths.append(path)
        chunk.clear()

    for source in sources:
        chunk.append(source)
        if len(chunk) == TODO_PER_FILE:
            flush()
    if chunk:
        flush()
    return paths


def read_todo(path: str) -> list[LabelSource]:
    return [LabelSource(**json.loads(line)) for line in read_bytes(path).decode().splitlines()]


def add_index_build(
    pipeline: beam.Pipeline,
    todo_files: list[str],
    index_path: str,
    work_dir: str,
    run: str,
    buckets: int,
    read_label=pool_labels,
) -> beam.PCollection:
    """The build's steps on ``pipeline``; returns the PCollection of bucket files written.
    ``read_label`` reads an entry's train IDs on the workers (default: the pool's own label
    maps; ``storage.unlabelled_pool.PoolLabeller`` predicts them)."""
    return (
        pipeline
        | "TodoFiles" >> beam.Create(todo_files)
        | "ReadTodo" >> beam.FlatMap(read_todo)
        | "Spread" >> beam.Reshuffle()
        | "WriteIndexParts" >> WriteIndexParts(index_path, work_dir, run, buckets, read_label)
    )
