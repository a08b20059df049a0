"""How nblstm's benchmarks time a call: steady state first, cold latency apart.

- **Steady state** (``time_steady``), the headline: what a loop sees. Each peer's call is
  repeated back to back ``n`` times per sample, with ``n`` auto-ranged (as ``timeit`` does)
  so that a sample lasts at least ``min_sample_s``; the samples of all peers are
  interleaved (peer A's sample, peer B's sample, ..., then the next round, in a rotated
  order), so a drifting clock or a busy neighbour hits every peer alike; the result is the
  median of the per-call times of ``samples`` rounds. There is no pause anywhere: thread
  pools that keep spinning after a call (numba's OpenMP workers, OpenBLAS's, torch's) are
  measured as a loop meets them, and so is one of nblstm's pools taking the cores from its
  other (a forward on numba's threads, a backward on OpenBLAS's). Each sample starts after
  ``HANDOVER_S`` of the peer's own untimed calls: the previous peer's pools (another
  library's, which a user's loop would not have) spin down meanwhile.
- **Cold latency** (``time_cold``), a separate column: one call after ``idle_s`` seconds of
  idleness (pools asleep, caches cold-ish), the median of ``repeats``: what a single call
  in an interactive session or a rarely-called service sees.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


def autorange(run: Callable[[], object], min_time: float) -> int:
    """The smallest ``n`` of 1, 2, 5, 10, 20, 50, ... for which ``n`` back-to-back calls of
    ``run`` take at least ``min_time`` seconds (``timeit.Timer.autorange``'s rule)."""
    n = 1
    while True:
        for factor in (1, 2, 5):
            calls = n * factor
            if _time_calls(run, calls) >= min_time:
                return calls
        n *= 10


def _time_calls(run: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return time.perf_counter() - start


#: Untimed back-to-back calls of a peer before each of its samples, in seconds (at least one
#: call). Not a pause: the peer runs. It lets the previous peer's thread pool (another
#: library's OpenMP or OpenBLAS workers, which spin for a while after their last call) go to
#: sleep before the sample starts, so each peer is timed against its own pools only, as in
#: a user's loop.
HANDOVER_S = 0.1


def time_steady(runs: dict[str, Callable[[], object]], samples: int = 5,
                min_sample_s: float = 0.2, handover_s: float = HANDOVER_S,
                after_each: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each run in steady state: ``samples`` interleaved samples, each
    ``n`` back-to-back calls (auto-ranged per run to last ``min_sample_s``), each sample
    preceded by ``handover_s`` of the same run's untimed calls; ``after_each`` is called
    after every sample (a progress bar). Each run should have been called once before
    (compilation, first allocations)."""
    names = list(runs)
    calls = {name: autorange(runs[name], min_sample_s) for name in names}
    handover = {name: max(1, round(calls[name] * handover_s / max(min_sample_s, 1e-9)))
                for name in names}
    per_call = {name: [] for name in names}
    for round_index in range(samples):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:  # rotated: no peer always goes first
            _time_calls(runs[name], handover[name])
            per_call[name].append(_time_calls(runs[name], calls[name]) / calls[name])
            after_each()
    return per_call


def time_cold(runs: dict[str, Callable[[], object]], repeats: int = 3,
              idle_s: float = 0.5) -> dict[str, list[float]]:
    """Seconds of one call after ``idle_s`` seconds of idleness, ``repeats`` times per run
    (interleaved). Labelled as cold latency wherever it is reported: never the headline."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(idle_s)
            times[name].append(_time_calls(run, 1))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
