"""Executors of shard tasks: in this process, a local pool of spawned processes, or Dask.

Each executor calls :func:`turbsim.pipeline.render.run_shard` once per task and hands every returned
sidecar record to ``on_shard``; progress (samples written) goes to ``on_image``. All state is
passed explicitly: the thread count travels with each task, a pool worker reports through its
own pipe, so a module holds no mutable global and any number of runs can share a process.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from turbsim.physics.warp import warm_up
from turbsim.pipeline.plan import GenerateError, ShardTask
from turbsim.pipeline.recipe import Recipe
from turbsim.pipeline.render import configure_worker, run_shard

#: Receives the sidecar record of each finished shard.
ShardCallback = Callable[[dict[str, Any]], None]


def default_threads(workers: int) -> int:
    """Threads per worker: the cores this process may use, shared among ``workers``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def run_local(
    tasks: Sequence[ShardTask],
    recipe: Recipe,
    out: Path,
    skip_bad: bool,
    workers: int,
    on_image: Callable[[int], None],
    on_shard: ShardCallback,
) -> None:
    """Render ``tasks`` here (``workers`` <= 1) or in a pool of ``workers`` spawned processes.

    Args:
        tasks: the shards to render.
        recipe: the run's recipe.
        out: output folder.
        skip_bad: record undecodable inputs instead of stopping.
        workers: processes; each gets ``cores // workers`` threads.
        on_image: called with a number of samples just written.
        on_shard: called with each shard's sidecar record as it finishes.
    """
    threads = default_threads(workers)
    # compile the kernel once here, so that spawned workers load it from Numba's disk cache
    # instead of each compiling it (only the first run on a machine pays this)
    warm_up((np.dtype(np.uint8),), (np.dtype(np.float32),))
    if workers <= 1:
        for task in tasks:
            on_shard(run_shard(task, recipe, str(out), skip_bad, threads, on_image))
        return
    _run_pool(tasks, recipe, out, skip_bad, workers, threads, on_image, on_shard)


def _run_pool(
    tasks: Sequence[ShardTask],
    recipe: Recipe,
    out: Path,
    skip_bad: bool,
    workers: int,
    threads: int,
    on_image: Callable[[int], None],
    on_shard: ShardCallback,
) -> None:
    """The process pool of :func:`run_local`: one pipe per worker, tasks handed out one by one.

    Interrupts: workers ignore SIGINT (a terminal's Ctrl-C goes to the whole process group),
    so only this process raises KeyboardInterrupt; on it, or on any error, every worker is
    terminated (killed after a grace period) before the exception propagates. A worker's
    shard is either published whole (atomic rename) or left as a temporary that the next run
    removes, so an interrupted folder is resumable. Workers also die with this process (see
    :func:`_exit_with_parent`), so no interrupt or kill leaves them running.

    Raises:
        GenerateError: a worker process stopped without reporting (killed, crashed).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    todo = deque(tasks)
    pool: list[_Worker] = []
    try:
        # SIGINT stays blocked in the spawned interpreters until they ignore it themselves, so
        # a Ctrl-C while they start (imports take ~1 s) prints no traceback there
        with _sigint_blocked_in_this_thread():
            for _ in range(min(workers, len(todo))):
                _start_worker(pool, ctx, recipe, out, skip_bad, threads)
        for worker in pool:
            _hand_out(worker, todo)
        while busy := [w for w in pool if w.task is not None]:
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn in ready or worker.process.sentinel in ready:
                    _receive(worker, on_image, on_shard)
                    if worker.task is None:
                        _hand_out(worker, todo)
        for worker in pool:
            worker.process.join(_EXIT_GRACE_S)
    finally:
        _stop(pool)


#: Seconds a worker gets to exit after being told to (done) or terminated (SIGTERM).
_EXIT_GRACE_S = 3.0


@dataclass
class _Worker:
    """A spawned worker, this end of its pipe, and the task it renders (None: idle)."""

    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    task: ShardTask | None = None


def _start_worker(
    pool: list[_Worker], ctx: Any, recipe: Recipe, out: Path, skip_bad: bool, threads: int
) -> None:
    """Start one more worker and add it to ``pool`` (first, so that it is stopped in any case)."""
    here, there = ctx.Pipe()
    process = ctx.Process(
        target=_worker_main,
        args=(there, os.getpid(), recipe, str(out), skip_bad, threads),
        name="turbsim-worker",
        daemon=True,  # multiprocessing's exit handler terminates daemons instead of joining
    )
    pool.append(_Worker(process, here))
    try:
        process.start()
    finally:
        there.close()  # the worker holds the only other end: its death reads as EOF here


def _hand_out(worker: _Worker, todo: deque[ShardTask]) -> None:
    """Send ``worker`` the next task, or None (exit) when there is none left."""
    worker.task = todo.popleft() if todo else None
    try:
        worker.conn.send(worker.task)
    except OSError:  # it died; the sentinel reports it (or nothing was left to do)
        if worker.task is not None:
            raise _worker_died(worker) from None


def _receive(worker: _Worker, on_image: Callable[[int], None], on_shard: ShardCallback) -> None:
    """Handle every message ``worker`` has sent; set ``worker.task`` to None once it is done.

    Raises:
        Exception: the exception the worker's task raised (its traceback as the cause).
        GenerateError: the worker stopped without reporting its task.
    """
    while worker.task is not None:
        try:
            if not worker.conn.poll():
                break
            kind, value, *extra = worker.conn.recv()
        except (EOFError, OSError):  # it died, perhaps in the middle of a message
            raise _worker_died(worker) from None
        if kind == "image":
            on_image(value)
        elif kind == "shard":
            worker.task = None
            on_shard(value)
        else:
            raise value from _RemoteTraceback(extra[0])
    if worker.task is not None and not worker.process.is_alive():
        raise _worker_died(worker)


def _worker_died(worker: _Worker) -> GenerateError:
    worker.process.join(_EXIT_GRACE_S)
    task = worker.task
    where = f" while rendering {task.split} shard {task.index}" if task is not None else ""
    return GenerateError(
        f"worker process {worker.process.pid} stopped (exit code {worker.process.exitcode})"
        f"{where}; published shards are kept: rerun with --resume"
    )


def _stop(pool: list[_Worker]) -> None:
    """Terminate the workers still alive, kill those that outlive the grace period."""
    with _sigint_ignored():  # a second Ctrl-C cannot cut the clean-up short
        started = [w.process for w in pool if w.process.pid is not None]
        for process in started:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + _EXIT_GRACE_S
        for process in started:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in started:
            if process.is_alive():
                process.kill()
                process.join(_EXIT_GRACE_S)
        for worker in pool:
            worker.conn.close()


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text."""

    def __str__(self) -> str:
        return str(self.args[0])


def _worker_main(
    conn: Connection, parent_pid: int, recipe: Recipe, out: str, skip_bad: bool, threads: int
) -> None:
    """A worker's loop: receive a task, render it, report progress and the record; None ends.

    Progress is ``("image", n)``, a result ``("shard", record)``; an exception raised by a task
    is sent as ``("error", exception, traceback text)`` and ends the worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _exit_with_parent(parent_pid)
    try:
        configure_worker(threads)
    except MemoryError as exc:
        _send_error(conn, exc)
        return

    def on_image(n: int) -> None:
        conn.send(("image", n))

    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        try:
            record = run_shard(task, recipe, out, skip_bad, threads, on_image)
        except Exception as exc:  # sent to the parent, which raises it
            _send_error(conn, exc)
            return
        conn.send(("shard", record))


def _send_error(conn: Connection, exc: Exception) -> None:
    """Send ``("error", exception, traceback text)``; short of memory, the bare message (the
    worker then ends; if even that fails, the parent reads its death)."""
    try:
        conn.send(("error", _picklable(exc), traceback.format_exc()))
    except MemoryError:
        try:
            conn.send(("error", RuntimeError(f"{type(exc).__name__}: {exc}"), ""))
        except (MemoryError, OSError):
            pass
    except OSError:  # the parent is gone
        pass


def _picklable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _exit_with_parent(parent_pid: int) -> None:
    """End this process when its parent ends, even by SIGKILL: no orphaned workers.

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a daemon thread polls the parent's pid once a second.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:

        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="turbsim-parent-watch", daemon=True).start()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@contextmanager
def _sigint_blocked_in_this_thread() -> Iterator[None]:
    """Block SIGINT in the calling thread (processes spawned meanwhile inherit the mask).

    A SIGINT that arrives meanwhile is delivered when the block ends (or at once to another
    thread of this process), so no Ctrl-C is lost.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    # launching the tracker unblocks SIGINT (CPython unblocks after starting it): launch it first
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT meanwhile (main thread only: elsewhere Python cannot set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def run_dask(
    tasks: Sequence[ShardTask],
    recipe: Recipe,
    out: Path,
    skip_bad: bool,
    scheduler: str,
    workers: int,
    on_shard: ShardCallback,
) -> None:
    """Render ``tasks`` on a Dask cluster: ``scheduler`` is an address or ``"local-cluster"``.

    Workers render with one thread each. ``on_shard`` receives each sidecar record as its
    shard finishes (Dask reports no per-sample progress).

    Raises:
        GenerateError: (key ``"scheduler"``) Dask (``distributed``) is not installed.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise GenerateError(
            "a Dask scheduler needs Dask: pip install 'turbsim-feedbackseg[dask]'", "scheduler"
        ) from None
    cluster = None
    if scheduler == "local-cluster":
        cluster = LocalCluster(
            n_workers=max(1, workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    # the output folder is part of each task's key: two runs of one recipe into different folders
    # on a shared scheduler must not share futures
    out_key = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:8]
    try:
        futures = [
            client.submit(
                run_shard,
                t,
                recipe,
                str(out),
                skip_bad,
                1,
                None,
                pure=False,
                key=f"turbsim-shard-{t.global_index}-{recipe.digest()[:8]}-{out_key}",
            )
            for t in tasks
        ]
        for fut in as_completed(futures):
            on_shard(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
