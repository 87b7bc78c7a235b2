"""One shared AMAdapterPipeline called from several threads at once gives the same
bytes as the same calls made one at a time (per-call state travels with the call)."""

import threading
import time

import numpy as np
import pytest
import torch

from amadapter.pipelines.inversion_cache import InversionCache
from tests.model_helpers import block_labels, photo, single_thread, tiny_pipeline  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")

THREADS = 6


def _calls():
    """Different targets, exemplars, modes, step counts, guidance and batch sizes per
    call, so that any state leaking from one call into another changes bytes or shapes.
    Calls 0 and 1 share an exemplar (both need its inversion at once)."""
    rng = np.random.default_rng(3)
    shared_photo, shared_labels = photo(rng), block_labels(rng)
    calls = []
    for i in range(THREADS):
        batch = 1 + i % 3
        targets = [block_labels(rng) for _ in range(batch)]
        ex_photo, ex_labels = (shared_photo, shared_labels) if i < 2 else (photo(rng), block_labels(rng))
        calls.append(
            dict(
                target_labels=targets,
                exemplar_images=[ex_photo],
                exemplar_labels=[ex_labels],
                seeds=[100 * i + j for j in range(batch)],
                num_inference_steps=2 + (i // 2) % 3,  # calls 0 and 1 alike: one inversion key
                guidance_scale=(7.5, 1.0)[i % 2],
                mode=("am_adapter", "categorical", "augmented", "none")[i % 4],
                exemplar_path=("inverted", "noised")[(i // 2) % 2],  # calls 0 and 1 alike
                output_type="np",
            )
        )
    return calls


def _run_concurrently(pipe, calls):
    """Every call in its own thread, all released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results, errors = [None] * len(calls), []

    def work(i):
        barrier.wait()
        try:
            results[i] = pipe(**calls[i]).images
        except Exception as error:  # noqa: BLE001 - reported below with its call
            errors.append((i, repr(error)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


def test_concurrent_calls_equal_sequential_calls_byte_for_byte():
    pipe = tiny_pipeline()
    calls = _calls()
    sequential = [pipe(**c).images for c in calls]
    for _ in range(2):  # twice: thread interleavings differ between rounds
        pipe.inversion_cache = InversionCache()  # every exemplar a miss again, inverted concurrently
        concurrent = _run_concurrently(pipe, calls)
        for i, (a, b) in enumerate(zip(sequential, concurrent)):
            assert a.shape == b.shape, f"call {i}"
            assert a.tobytes() == b.tobytes(), f"call {i}: max difference {np.abs(a - b).max()}"
        # calls 0 and 1 share an exemplar: inverted once, the other thread waited for it
        distinct = len({c["exemplar_images"][0].tobytes() for c in calls if c["mode"] != "none"})
        assert pipe.inversion_cache.misses == distinct


def test_inversion_cache_computes_a_key_once_for_concurrent_callers():
    cache = InversionCache()
    computed = []

    def compute():
        computed.append(1)
        time.sleep(0.3)  # the other callers ask meanwhile and must wait, not compute
        return torch.ones(2)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(computed) == 1 and len(results) == 4
    assert all(r.tolist() == [1.0, 1.0] for r in results)
    assert cache.misses == 1 and cache.hits == 3


def test_inversion_cache_retries_after_a_failed_computation():
    cache = InversionCache()

    def fail():
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        cache.get_or_compute("k", fail)
    assert cache.get_or_compute("k", lambda: torch.zeros(1)).tolist() == [0.0]


def test_a_call_changes_no_shared_module_state(monkeypatch):
    """The attention processors are installed when the pipeline is made; a call neither
    installs them again (set_attn_processor while other threads run forwards) nor moves
    the shared weights (no device/dtype arguments)."""
    pipe = tiny_pipeline()
    installs = []
    monkeypatch.setattr(pipe.unet, "set_attn_processor", lambda *a, **k: installs.append(a))
    call = dict(_calls()[0], num_inference_steps=1)
    pipe(**call)
    assert installs == []
    with pytest.raises(TypeError, match="device"):
        pipe(**call, device="cpu")
