"""Executors of shard tasks: in this process, a local pool of spawned processes, or Dask.

Each executor calls :func:`turbsim.render.run_shard` once per task and hands every returned
sidecar record to ``on_shard``; progress (samples written) goes to ``on_image``. All state is
passed explicitly: the thread count and the progress channel travel with each task, so a
module holds no mutable global and any number of runs can share a process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from turbsim.plan import GenerateError, ShardTask
from turbsim.recipe import Recipe
from turbsim.render import configure_worker, run_shard
from turbsim.warp import warm_up

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
    """The process pool of :func:`run_local`; progress comes back through a managed queue."""
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        progress = manager.Queue()  # a proxy: picklable, so it travels with each task

        def drain() -> None:
            try:
                while True:
                    on_image(progress.get_nowait())
            except queue_mod.Empty:
                pass

        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=configure_worker,
            initargs=(threads,),
        )
        try:
            pending = {
                pool.submit(run_shard, t, recipe, str(out), skip_bad, threads, progress.put)
                for t in tasks
            }
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    on_shard(fut.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        drain()


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
                key=f"turbsim-shard-{t.global_index}-{recipe.digest()[:8]}",
            )
            for t in tasks
        ]
        for fut in as_completed(futures):
            on_shard(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
