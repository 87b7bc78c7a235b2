"""End a Beam job's process once its work is done, without interpreter finalization.

When ``main`` returns, every shard, manifest and summary line is written and closed,
but library threads are still alive: Beam's shared pool keeps the daemon worker
threads that ran the model (its ``shutdown`` is a no-op by design), and a worker can
still be in torch's C++ code (a tensor freed as its last bundle is dropped). CPython
3.11 ends such a daemon thread with ``pthread_exit`` when it next takes the GIL during
finalization; unwinding through torch's C++ frames then calls ``std::terminate``:
"terminate called without an active exception", exit 134, now and then
(pytorch/pytorch#38228; ``tests/test_process_exit.py`` reproduces it). Exiting here
does what a normal exit does before finalization (join non-daemon threads, run the
``atexit`` handlers: Beam's job servers, multiprocessing's children) and then leaves,
so no daemon thread is ever unwound.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn


def exit_without_finalizing(status: int) -> NoReturn:
    """Join the non-daemon threads, run the exit handlers, flush, and end with ``status``."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # what Py_Finalize would run first; os._exit skips it
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
