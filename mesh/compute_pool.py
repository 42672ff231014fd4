"""Threads for model runs that yield the CPU to the node's control plane.

A small node shares its CPU (often a quota of a core) between onnxruntime and
the event loop that answers failure-detector probes, Raft and peers' calls.
When both want the CPU, the control plane must win: a node whose probe
answers wait behind a model run is declared dead by its peers, they drop its
connections, and every request it had in flight fails (measured with
``bench offload``: a node under a 0.25-core quota flapped dead/alive while it
ran models at the default priority). So model runs go to threads of their
own that lower their scheduling priority once, at start (``os.setpriority``
on the thread: a higher nice value needs no privilege on Linux), and trio
waits for them without holding one of its own worker threads.

Only the CPU time between runnable threads is affected: an idle control plane
leaves the whole CPU to the model. A run cannot be interrupted; a caller that
is cancelled stops waiting, and the run's result is dropped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import trio

T = TypeVar("T")
log = logging.getLogger("meshnode.inference")

COMPUTE_NICE = 10  # added to the niceness of model-run threads (CFS weight ~10x lower than the event loop's)


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPUTE_NICE)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: runs at the normal priority
        log.debug("inference: model threads keep their priority (%s)", exc)


class ComputePool:
    """A fixed set of low-priority threads; ``await pool.run(fn, *args)`` from trio."""

    def __init__(self, threads: int, name: str = "meshnode-compute") -> None:
        self._executor = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=name,
                                            initializer=_lower_priority)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool and return its result (or raise its exception)."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        future = self._executor.submit(fn, *args)

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the node stopped meanwhile: nobody waits

        future.add_done_callback(wake)
        await done.wait()
        return future.result()

    def close(self) -> None:
        """Stop taking runs; runs in progress finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
