"""Exemplar retrieval at pool scale: build, index size, memory, query speed, agreement.

    python -m bench.retrieval [--quick] [--pool N] [--queries Q] [--threads T] [--compare]

The pool holds N layouts of the procedural world (``amadapter.world``, train
seeds, 128x256), the queries Q layouts of its test seeds (so no query is in the
pool). The layouts are generated where a real build would decode PNGs;
``generate_s`` is that part of ``build_s``. All in one process and one run:

1. build the index with ``build_index`` into a temporary folder (Parquet);
2. load it, warm up, then query all Q maps in batches three times (median);
   ``peak_rss_mb`` is the process's peak resident memory at that point;
3. brute force: the exact score of every query against every pool entry
   (``layout_scores_against_pool``); ``top1_agreement`` is the share of queries
   whose returned exemplar scores at least 0.99 of the best, ``top1_exact`` the
   share that got the best itself;
4. with ``--compare`` (after the peak memory is taken): other candidate searches
   on the same descriptors, each followed by the same exact re-rank of the same
   number of candidates: numpy float32 brute force over cosine (dense product +
   argpartition), and faiss-cpu flat inner product and IVF, if faiss is installed
   (it is not a project dependency).

The last printed line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from amadapter import world
from amadapter.retrieval import ExemplarIndex, build_index, layout_scores_against_pool
from amadapter.retrieval.candidates import CandidateSearch
from amadapter.retrieval.descriptor import downsample_nearest, layout_descriptors
from amadapter.retrieval.index import DEFAULT_CANDIDATES, QUERY_BATCH
from amadapter.retrieval.score import class_areas, layout_scores
from transforms.records import LabelSource
from bench.memory import peak_rss_mb

LAYOUT_SIZE = (128, 256)
REPEATS = 3
REFERENCE_BATCH = 200


def world_sources(split: str, n: int) -> list[LabelSource]:
    return [
        LabelSource(
            key=f"world-{seed}",
            label_path=f"world/{split}/world_{seed:06d}_{seed:06d}_gtFine_labelTrainIds.png",
            photo_path=f"world/{split}/world_{seed:06d}_{seed:06d}_leftImg8bit.png",
            label_format="train_ids",
            dataset="world",
        )
        for seed in world.split_seeds(split, n)
    ]


class TimedGenerator:
    """The pool's 'decoder': generates a source's layout, adding up the time it takes."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, source: LabelSource) -> np.ndarray:
        began = time.perf_counter()
        layout = world.layout(int(source.key.split("-")[1]), *LAYOUT_SIZE)
        self.seconds += time.perf_counter() - began
        return layout


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def brute_force_best(index: ExemplarIndex, small_queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Best exact score per query over the whole pool, and seconds per query."""
    began = time.perf_counter()
    best = np.concatenate(
        [
            layout_scores_against_pool(
                small_queries[i : i + REFERENCE_BATCH], index.small_maps, index.class_areas
            ).max(1)
            for i in range(0, len(small_queries), REFERENCE_BATCH)
        ]
    )
    return best, (time.perf_counter() - began) / len(small_queries)


def rerank_best(index: ExemplarIndex, small_queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact best score among each query's candidate rows (the index's own re-rank step)."""
    return np.concatenate(
        [
            layout_scores(
                small_queries[i : i + 16],
                index.small_maps[rows[i : i + 16]],
                index.class_areas[rows[i : i + 16]],
            ).max(1)
            for i in range(0, len(small_queries), 16)
        ]
    )


def compare_backends(index, small_queries, best, candidates) -> dict:
    """Candidate searches alone (the re-rank is not in their time), each then scored by the
    same exact re-rank: ours (``CandidateSearch``: int8 product + score estimate) and
    others over the same descriptors as float32 unit vectors (cosine). Every search
    takes the queries in batches of ``QUERY_BATCH``, as ``ExemplarIndex.query`` does."""
    int8_pool = np.concatenate(
        [layout_descriptors(index.small_maps[i : i + 8192]) for i in range(0, len(index), 8192)]
    )
    ours = CandidateSearch(int8_pool, index.class_areas)
    int8_queries, query_areas = layout_descriptors(small_queries), class_areas(small_queries)
    pool = int8_pool.astype(np.float32)
    del int8_pool
    pool /= np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    queries = int8_queries.astype(np.float32)
    queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)

    searches = {
        "ours_torch_int8_estimate": lambda s: ours.search(
            int8_queries[s], query_areas[s], candidates
        )[0],
        "numpy_fp32_cosine": lambda s: np.argpartition(
            -(queries[s] @ pool.T), candidates, axis=1
        )[:, :candidates],
    }
    results = {}
    try:
        import faiss  # noqa: PLC0415 - optional, measured only when installed

        faiss.omp_set_num_threads(torch.get_num_threads())
        flat = faiss.IndexFlatIP(pool.shape[1])
        flat.add(pool)
        searches["faiss_flat_ip"] = lambda s: flat.search(queries[s], candidates)[1]
        nlist = int(4 * np.sqrt(len(pool)))
        began = time.perf_counter()
        quantizer = faiss.IndexFlatIP(pool.shape[1])  # must outlive ivf (faiss keeps a raw pointer)
        ivf = faiss.IndexIVFFlat(quantizer, pool.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(pool[:: max(1, len(pool) // (64 * nlist))])
        ivf.add(pool)
        results["faiss_ivf_build_s"] = round(time.perf_counter() - began, 1)
        for nprobe in (16, 64):

            def ivf_search(s, nprobe=nprobe):
                ivf.nprobe = nprobe
                return ivf.search(queries[s], candidates)[1]

            searches[f"faiss_ivf{nlist}_nprobe{nprobe}"] = ivf_search
    except ImportError:
        results["faiss"] = "not installed"
    n = len(queries)
    for name, search in searches.items():
        search(slice(0, 32))  # warm-up
        times = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            rows = np.concatenate(
                [search(slice(i, i + QUERY_BATCH)) for i in range(0, n, QUERY_BATCH)]
            )
            times.append((time.perf_counter() - began) * 1e3 / n)
        got = rerank_best(index, small_queries, np.where(rows >= 0, rows, 0))
        results[name] = {
            "search_ms_per_query": round(statistics.median(times), 3),
            "top1_agreement": round(float(np.mean(got >= 0.99 * best)), 4),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pool 5000, 200 queries")
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--compare", action="store_true", help="also numpy and faiss searches")
    args = parser.parse_args()
    if args.quick:
        args.pool, args.queries = 5000, 200
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as path:
        generator = TimedGenerator()
        began = time.perf_counter()
        report = build_index(path, world_sources("train", args.pool), generator)
        build_s = time.perf_counter() - began
        index_bytes = folder_bytes(path)
        began = time.perf_counter()
        index = ExemplarIndex.load(path)
        load_s = time.perf_counter() - began
    print(f"built {report.total} entries in {build_s:.1f} s ({generator.seconds:.1f} s generating)",
          flush=True)  # fmt: skip

    queries = [world.layout(seed, *LAYOUT_SIZE) for seed in world.split_seeds("test", args.queries)]
    paths = [None] * len(queries)
    index.query(queries[:32], k=1, target_paths=paths[:32], candidates=args.candidates)
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        ranked = index.query(queries, k=1, target_paths=paths, candidates=args.candidates)
        times.append((time.perf_counter() - began) * 1e3 / len(queries))
    peak = peak_rss_mb()
    print(f"query: {statistics.median(times):.2f} ms per query (repeats {times})", flush=True)

    small_queries = np.stack([downsample_nearest(q) for q in queries])
    best, reference_s = brute_force_best(index, small_queries)
    returned = np.array([r[0].score for r in ranked])
    result = {
        "pool": report.total,
        "queries": len(queries),
        "candidates": args.candidates,
        "threads": args.threads,
        "build_s": round(build_s, 1),
        "generate_s": round(generator.seconds, 1),
        "index_bytes": index_bytes,
        "load_s": round(load_s, 2),
        "ms_per_query": round(statistics.median(times), 3),
        "ms_per_query_repeats": [round(t, 3) for t in times],
        "top1_agreement": round(float(np.mean(returned >= 0.99 * best)), 4),
        "top1_exact": round(float(np.mean(returned >= best - 1e-6)), 4),
        "reference_ms_per_query": round(reference_s * 1e3, 1),
        "peak_rss_mb": round(peak),
        "median_best_score": round(float(np.median(best)), 4),
    }
    if args.compare:
        result["compare"] = compare_backends(index, small_queries, best, args.candidates)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
