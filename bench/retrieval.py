"""Exemplar retrieval at pool scale: build, index size, memory, query speed, agreement.

    python -m bench.retrieval [--quick] [--pool N] [--queries Q] [--reference-queries R]
                              [--threads T]

The pool holds N layouts of the procedural world (``amadapter.world``, 128x256;
``bench.world_pool``: train seeds, then seeds outside every split), the queries Q
layouts of its test seeds (so no query is in the pool). The pool's small maps are
generated once and cached on disk (``bench.world_pool``: about 17 minutes for
1,000,000), standing in for the PNG decoding of a real build; ``generate_s`` is
that time when this run generated them, else 0. Stages, each in a fresh process so
that each peak resident set (``VmHWM``) is its own:

1. build: ``build_index`` of the N entries into a temporary folder (Parquet);
   ``build_s``, ``build_peak_rss_mb``, ``index_bytes``;
2. query: ``ExemplarIndex.load`` (``load_s``: the first open on this machine, which
   derives the mapped files, ``mapped.py``, of ``mapped_bytes``; ``reopen_s``: a
   second open), a warm-up,
   then all Q maps queried in batches three times (median ``ms_per_query``, and
   ``cpu_ms_per_query``: process CPU time, all threads, which the machine's other
   load inflates less); ``peak_rss_mb`` is that process's peak after all of it;
3. reference, here: the exact score of the first R queries against every pool entry
   (``layout_scores_against_pool``, brute force on the cached small maps; R < Q at
   large N, where it takes about 1.7 s a query); ``top1_agreement`` is the share of
   those queries whose returned exemplar scores at least 0.99 of the best,
   ``top1_exact`` the share that got the best itself. The returned scores are
   checked against the brute force's for the returned entries.

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

import numpy as np

from bench.world_pool import LAYOUT_SIZE, PoolReader, pool_seed, pool_small_maps

REPEATS = 3
REFERENCE_BATCH = 100
LARGE_POOL = 100_000  # above it, the reference takes --reference-queries of the queries
DEFAULT_REFERENCE_QUERIES = 300


def _in_fresh_process(function, *args):
    """``function(*args)`` in a new process (its own peak resident set), its result."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def pool_sources(n: int) -> Iterator:
    from storage.records import LabelSource

    for i in range(n):
        seed = pool_seed(i)
        yield LabelSource(
            key=f"world-{i}",
            label_path=f"world/pool/world_{seed:07d}_{seed:07d}_gtFine_labelTrainIds.png",
            photo_path=f"world/pool/world_{seed:07d}_{seed:07d}_leftImg8bit.png",
            label_format="train_ids",
            dataset="world",
        )


def query_maps(n: int) -> list[np.ndarray]:
    from amadapter import world

    return [world.layout(seed, *LAYOUT_SIZE) for seed in world.split_seeds("test", n)]


def build_stage(path: str, n: int) -> dict:
    from amadapter.retrieval import build_index
    from bench.memory import peak_rss_mb

    read = PoolReader(n)
    began = time.perf_counter()
    # A small map read back is its own small map (downsampling it again changes nothing).
    report = build_index(path, pool_sources(n), lambda s: read(int(s.key.split("-")[1])))
    return {
        "total": report.total,
        "build_s": time.perf_counter() - began,
        "build_peak_rss_mb": peak_rss_mb(),
        "index_bytes": sum(
            os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)
        ),
    }


def query_stage(path: str, queries: int, threads: int, candidates: int | None) -> dict:
    import torch

    from amadapter.retrieval import ExemplarIndex
    from amadapter.retrieval.index import DEFAULT_CANDIDATES
    from bench.memory import peak_rss_mb

    torch.set_num_threads(threads)
    candidates = candidates or DEFAULT_CANDIDATES
    began = time.perf_counter()
    index = ExemplarIndex.load(path)
    load_s = time.perf_counter() - began
    began = time.perf_counter()
    ExemplarIndex.load(path)
    reopen_s = time.perf_counter() - began
    maps = query_maps(queries)
    paths = [None] * len(maps)
    load_before = os.getloadavg()[0]
    index.query(maps[:32], k=1, target_paths=paths[:32], candidates=candidates)  # warm-up
    wall, cpu = [], []
    for _ in range(REPEATS):
        began, began_cpu = time.perf_counter(), time.process_time()
        ranked = index.query(maps, k=1, target_paths=paths, candidates=candidates)
        wall.append((time.perf_counter() - began) * 1e3 / len(maps))
        cpu.append((time.process_time() - began_cpu) * 1e3 / len(maps))
    cache = os.environ["AMADAPTER_INDEX_CACHE"]
    mapped_bytes = sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(cache)
        for name in names
    )
    return {
        "candidates": candidates,
        "mapped_bytes": mapped_bytes,
        "load_s": load_s,
        "reopen_s": reopen_s,
        "ms_per_query": statistics.median(wall),
        "ms_per_query_repeats": wall,
        "cpu_ms_per_query": statistics.median(cpu),
        "peak_rss_mb": peak_rss_mb(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "returned": [(int(r[0].key.split("-")[1]), r[0].score) for r in ranked],
    }


def reference_best(pool: np.ndarray, small_queries: np.ndarray) -> np.ndarray:
    """The best exact score of each query over the whole pool (brute force)."""
    from amadapter.retrieval import layout_scores_against_pool
    from amadapter.retrieval.score import class_areas

    areas = np.concatenate([class_areas(pool[i : i + 65536]) for i in range(0, len(pool), 65536)])
    return np.concatenate(
        [
            layout_scores_against_pool(small_queries[i : i + REFERENCE_BATCH], pool, areas).max(1)
            for i in range(0, len(small_queries), REFERENCE_BATCH)
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pool 5000, 200 queries")
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--reference-queries",
        type=int,
        default=None,
        help=f"queries checked by brute force (default: all, or {DEFAULT_REFERENCE_QUERIES} "
        f"above {LARGE_POOL} entries)",
    )
    parser.add_argument("--candidates", type=int, default=None, help="default: the index's")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: on a shared machine, a second thread waiting for a "
        "busy core costs more than it brings; the augment job's default too)",
    )
    args = parser.parse_args()
    if args.quick:
        args.pool, args.queries = 5000, 200
    n_reference = args.reference_queries or (
        args.queries if args.pool <= LARGE_POOL else min(args.queries, DEFAULT_REFERENCE_QUERIES)
    )

    pool, generate_s = pool_small_maps(args.pool)
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as path:
        built = _in_fresh_process(build_stage, path, args.pool)
        print(f"built {built['total']} entries in {built['build_s']:.1f} s, "
              f"peak {built['build_peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-retrieval-cache-") as cache:
            os.environ["AMADAPTER_INDEX_CACHE"] = cache  # a first open: the child maps anew
            queried = _in_fresh_process(
                query_stage, path, args.queries, args.threads, args.candidates
            )
    print(f"query: {queried['ms_per_query']:.2f} ms per query "
          f"(repeats {queried['ms_per_query_repeats']}), peak {queried['peak_rss_mb']:.0f} MB",
          flush=True)  # fmt: skip

    import torch

    from amadapter.retrieval.descriptor import downsample_nearest
    from amadapter.retrieval.score import layout_scores

    torch.set_num_threads(args.threads)

    small_queries = np.stack([downsample_nearest(q) for q in query_maps(n_reference)])
    began = time.perf_counter()
    best = reference_best(pool, small_queries)
    reference_s = time.perf_counter() - began
    rows = np.array([row for row, _ in queried["returned"][:n_reference]])
    returned = np.array([score for _, score in queried["returned"][:n_reference]], np.float32)
    recomputed = layout_scores(small_queries, np.asarray(pool[rows])[:, None])[:, 0]
    np.testing.assert_allclose(returned, recomputed, rtol=1e-6)  # the index's exact scores

    result = {
        "pool": built["total"],
        "queries": args.queries,
        "reference_queries": n_reference,
        "candidates": queried["candidates"],
        "threads": args.threads,
        "generate_s": round(generate_s, 1),
        "build_s": round(built["build_s"], 1),
        "build_peak_rss_mb": round(built["build_peak_rss_mb"]),
        "index_bytes": built["index_bytes"],
        "mapped_bytes": queried["mapped_bytes"],
        "load_s": round(queried["load_s"], 2),
        "reopen_s": round(queried["reopen_s"], 3),
        "ms_per_query": round(queried["ms_per_query"], 3),
        "ms_per_query_repeats": [round(t, 3) for t in queried["ms_per_query_repeats"]],
        "cpu_ms_per_query": round(queried["cpu_ms_per_query"], 3),
        "top1_agreement": round(float(np.mean(returned >= 0.99 * best)), 4),
        "top1_exact": round(float(np.mean(returned >= best - 1e-6)), 4),
        "reference_ms_per_query": round(reference_s * 1e3 / n_reference, 1),
        "peak_rss_mb": round(queried["peak_rss_mb"]),
        "load_average": queried["load_average"],
        "median_best_score": round(float(np.median(best)), 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
