"""Throughput of ``nblstm.dask``: one process vs a 2-worker ``LocalCluster``, and the cost of
one task.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dask_throughput.py \
        [--json benchmarks/results/dask_throughput_cpu.json] [--repeats 5]

Throughput: sequences per second for one inference problem of ``B`` sequences, median of
``--repeats`` interleaved rounds (each round runs every variant once) after a warm-up (numba compiles in each worker process, or loads
the kernels from its on-disk cache):

- ``direct``: one ``lstm(x)`` call on the whole batch, in this process;
- ``direct, block by block``: the same chunks as the cluster, one after another;
- the two above again with BLAS limited to 1 thread (threadpoolctl), as in each worker
  (the nanny sets ``OPENBLAS_NUM_THREADS=1`` etc. for a 1-thread worker);
- ``dask threads``: ``nblstm.dask.forward`` with dask's threaded scheduler (this process,
  2 threads, BLAS limited to 1 thread: the kernels release the GIL);
- ``cluster, data on workers``: 2 worker processes x 1 thread; ``x`` persisted on the
  workers first, the outputs persisted there (compute only, what a cluster pipeline sees);
- ``cluster, end to end``: NumPy in this process -> workers -> NumPy back (``compute``).

Per-task overhead: ``K`` chunks of one sequence and one step (the work is ~10 us); the
cluster's wall time per chunk, minus nothing: it is what a task costs when there is
nothing to compute. Also the client-side time to build the graph, per chunk.

The machine is shared: the load average is recorded before and after.
"""
import argparse
import logging
import os
import statistics
import sys
import time
import warnings

import numpy as np

import dask
import dask.array as da
import distributed

import nblstm
import nblstm.dask as nbdask
from nblstm.bench import environment, save_json
from threadpoolctl import threadpool_info, threadpool_limits

# the end-to-end run ships x inside the graph on purpose (that is what it measures)
warnings.filterwarnings("ignore", message="Sending large graph")


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up: compile / load kernels, fill caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(runs: dict, repeats: int) -> dict:
    """{name: [seconds per round]}: a warm-up of each, then ``repeats`` rounds that run
    every variant once, so a change of the machine's load hits all of them alike. One call
    per sample, not the back-to-back samples of ``nblstm._timing``: each call here lasts
    0.1-1 s anyway, and repeating one cluster graph back to back races with the scheduler
    releasing its (deterministic) keys. No pause between calls."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def on_workers(client, x: np.ndarray, chunks: tuple):
    """``x`` as a dask array whose chunks already sit in the workers' memory."""
    array = client.persist(da.from_array(x, chunks=chunks))
    distributed.wait(array)
    return array


def _nblstm_tasks(dask_scheduler) -> int:
    """How many of the scheduler's keys nblstm.dask made (still known to the scheduler)."""
    return sum((key[0] if isinstance(key, tuple) else key).startswith("nblstm-")
               for key in dask_scheduler.tasks)


def forward_on_cluster(client, model, x_on_workers) -> None:
    """Build the graph, run it, keep the outputs on the workers until all are done, then
    make the scheduler forget every nblstm key: the keys are deterministic, so the next
    round would otherwise find its results still in memory and compute nothing."""
    out, _ = nbdask.forward(model, x_on_workers)
    result = client.persist(out)
    distributed.wait(result)
    # released, not cancelled: a cancel of these (deterministic) keys can arrive after the
    # next round asked for the same keys and cancel that round's futures
    del result, out
    while client.run_on_scheduler(_nblstm_tasks):
        time.sleep(0.01)


def throughput(client, repeats: int, T: int, B: int, X: int, H: int, chunk: int) -> dict:
    model = nblstm.LSTM(X, H, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    dx = da.from_array(x, chunks=(T, chunk, X))
    blocks = [x[:, start:start + chunk] for start in range(0, B, chunk)]
    x_on_workers = on_workers(client, x, (T, chunk, X))

    def with_one_blas_thread(run):
        def limited():
            with threadpool_limits(1):
                return run()
        return limited

    runs = {
        "direct": lambda: model(x),
        "direct, 1 BLAS thread": with_one_blas_thread(lambda: model(x)),
        "direct, block by block": lambda: [model(block) for block in blocks],
        "direct, block by block, 1 BLAS thread": with_one_blas_thread(
            lambda: [model(block) for block in blocks]),
        "dask threads (1 process, 2 threads x 1 BLAS thread)": with_one_blas_thread(
            lambda: nbdask.forward(model, dx)[0].compute(scheduler="threads", num_workers=2)),
        "cluster, data on workers (2 processes x 1 thread)": lambda: forward_on_cluster(
            client, model, x_on_workers),
        "cluster, end to end (2 processes x 1 thread)": lambda: client.compute(
            nbdask.forward(model, dx)[0], sync=True),
    }
    results = {}
    for name, times in interleaved_seconds(runs, repeats).items():
        seconds = statistics.median(times)
        results[name] = {"seconds": seconds, "sequences_per_s": B / seconds,
                         "all_seconds": times}
        print(f"  {name:<52} {seconds * 1e3:9.1f} ms  {B / seconds:10.0f} sequences/s  "
              f"(rounds: {min(times) * 1e3:.0f}-{max(times) * 1e3:.0f} ms)", flush=True)
    return {"shape": {"T": T, "B": B, "X": X, "H": H, "dtype": "float32", "chunk": chunk,
                      "tasks": len(blocks)}, "runs": results}


def task_overhead(client, repeats: int, K: int) -> dict:
    """K chunks of one sequence, one step, X = H = 8."""
    model = nblstm.LSTM(8, 8, seed=1)
    x = np.random.default_rng(1).standard_normal((1, K, 8)).astype(np.float32)
    x_on_workers = on_workers(client, x, (1, 1, 8))
    cluster = median_seconds(lambda: forward_on_cluster(client, model, x_on_workers), repeats)
    one_call = median_seconds(lambda: model(x[:, :1]), repeats * 20)
    build = median_seconds(lambda: nbdask.forward(model, x_on_workers), repeats)
    graph = nbdask.forward(model, x_on_workers)[0].__dask_graph__()
    result = {"chunks": K, "graph_keys": len(graph),
              "in_process_call_ms": one_call * 1e3,
              "cluster_ms_per_chunk": cluster / K * 1e3,
              "graph_build_ms_per_chunk": build / K * 1e3}
    print(f"  per chunk of (1, 1, 8): in-process call {one_call * 1e3:.3f} ms; cluster wall "
          f"{cluster / K * 1e3:.2f} ms per chunk ({len(graph) / K:.1f} graph keys per chunk); "
          f"graph build {build / K * 1e3:.3f} ms per chunk", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="benchmarks/results/dask_throughput_cpu.json")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if any(name in os.environ for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")):
        print("warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set and slow OpenBLAS down; "
              "run under env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE", file=sys.stderr)
    # before the cluster starts: its nanny sets OMP_NUM_THREADS=1 etc. in this process's
    # environment too (for the workers it spawns; this process's BLAS pools keep their size)
    in_process = environment()
    load_before = os.getloadavg()
    print(f"load average before: {load_before}", flush=True)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster) as client:
        worker_blas = client.run(lambda: [(p["internal_api"], p["num_threads"])
                                          for p in threadpool_info()])
        document = {
            "what": "nblstm.dask throughput: 1 process vs a 2-worker LocalCluster",
            "environment": in_process,
            "dask": dask.__version__, "distributed": distributed.__version__,
            "worker_blas_threads": worker_blas,
            "load_average_before": load_before,
            "throughput": throughput(client, args.repeats, T=50, B=4096, X=64, H=128,
                                     chunk=256),
            "task_overhead": task_overhead(client, args.repeats, K=200),
        }
    document["load_average_after"] = os.getloadavg()
    print(f"load average after: {document['load_average_after']}")
    save_json(document, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
