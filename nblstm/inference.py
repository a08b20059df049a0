"""Batch inference over array files (``nblstm infer``): files larger than memory, locally or
on a Dask scheduler.

- The model is an ``LSTM.save`` file (``.npz``) or an ONNX model (``.onnx``, read by
  ``LSTM.from_onnx``: its LSTM nodes, in nblstm's conventions); the inputs a ``.npy`` array in the model's
  layout, ``(T, B, X)`` or ``(B, T, X)`` with ``batch_first``, of the model's dtype.
- The input is memory-mapped (``np.load(mmap_mode="r")``) and read ``batch_size`` sequences
  at a time; the outputs ``(T, B, D*H)`` (or ``(B, T, D*H)``) are written block by block
  into a ``.npy`` opened with ``np.lib.format.open_memmap``. Memory use is a few blocks,
  whatever the file sizes.
- The output goes to a temporary file beside the final one (``nblstm._files``: an
  unpredictable name, created exclusively) and is renamed when complete: a bad file or a
  failure midway leaves nothing under the final name (and an existing file there
  untouched). An output path that names the model or the input file (also through links
  or another spelling of the path) is refused before any work.
- With a scheduler address, blocks run as tasks on the Dask cluster (``distributed``): the
  weights are sent to every worker once; this process reads the blocks from the file and
  writes the results, keeping a few blocks per worker in flight. The workers need no
  access to the files.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _layer_inputs as layer_inputs
from ._files import atomic_path, same_file
from ._progress import progress_bar
from .layers import LSTM

#: Blocks in flight per worker on a Dask cluster: one running, one queued, one travelling.
BLOCKS_IN_FLIGHT_PER_WORKER = 3


@dataclass(frozen=True)
class InferenceResult:
    """What ``infer_file`` wrote."""
    output_path: str
    shape: tuple
    dtype: np.dtype
    sequences: int
    blocks: int
    seconds: float


def open_inputs(path: str | os.PathLike, model: LSTM) -> np.ndarray:
    """The input file memory-mapped read-only, after checking it fits ``model``."""
    path = os.fspath(path)
    try:
        inputs = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as error:  # a bad header, a truncated file, a pickle: all unreadable
        raise ValueError(f"{path} is not a readable .npy array file: {error}") from error
    if not isinstance(inputs, np.ndarray):  # an .npz archive
        inputs.close()
        raise ValueError(f"{path} is an .npz archive; nblstm infer reads one .npy array")
    layer_inputs.check_dtype(model, path, inputs.dtype,
                             remedy=f"convert the file, e.g. np.save(path, "
                                    f"x.astype('{model.dtype.name}'))")
    layer_inputs.check_input_shape(model, path, inputs.shape, allow_unbatched=False)
    return inputs


def infer_file(model_path: str | os.PathLike, input_path: str | os.PathLike,
               output_path: str | os.PathLike, batch_size: int = 256,
               scheduler: str | None = None, progress: bool = True) -> InferenceResult:
    """Run the saved model over every sequence of ``input_path`` into ``output_path``.

    batch_size  sequences per block (one task on a cluster)
    scheduler   None: in this process; else a Dask scheduler address ("tcp://host:8786")
    progress    a progress bar on stderr (tqdm when installed)

    Bad files raise ``ValueError``/``TypeError`` naming the file, before anything is
    written; ``FileNotFoundError`` for a missing one; ``ValueError`` for an output that is
    the model or the input file.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for role, other in (("model", model_path), ("input", input_path)):
        if same_file(output_path, other):
            raise ValueError(f"the output {os.fspath(output_path)} is the {role} file "
                             f"{os.fspath(other)}: choose another output path")
    model = load_model(model_path)
    inputs = open_inputs(input_path, model)
    batch_axis = 0 if model.batch_first else 1
    out_shape = list(inputs.shape)
    out_shape[2] = model.num_directions * model.real_hidden_size
    B = inputs.shape[batch_axis]
    blocks = [slice(start, min(start + batch_size, B)) for start in range(0, B, batch_size)]

    def read(block: slice) -> np.ndarray:
        index = (block,) if batch_axis == 0 else (slice(None), block)
        return np.ascontiguousarray(inputs[index])

    output_path = os.fspath(output_path)
    started = time.perf_counter()
    with atomic_path(output_path) as temporary:
        outputs = np.lib.format.open_memmap(temporary, mode="w+", dtype=model.dtype,
                                            shape=tuple(out_shape))
        try:
            run = _run_on_cluster if scheduler is not None else _run_locally
            with progress_bar(B, "nblstm infer", unit="seq", enabled=progress) as bar:
                for block, result in run(model, blocks, read, scheduler):
                    index = (block,) if batch_axis == 0 else (slice(None), block)
                    outputs[index] = result
                    bar.update(block.stop - block.start)
            outputs.flush()
        finally:
            del outputs  # closes the memory map before the rename (or the removal)
    return InferenceResult(output_path, tuple(out_shape), model.dtype, B, len(blocks),
                           time.perf_counter() - started)


Blocks = Iterator[tuple[slice, np.ndarray]]


def load_model(path: str | os.PathLike) -> LSTM:
    """The model of an ``.onnx`` file (``LSTM.from_onnx``) or of an ``LSTM.save`` file."""
    if os.fspath(path).lower().endswith(".onnx"):
        return LSTM.from_onnx(path)
    return LSTM.load(path)


def _run_locally(model: LSTM, blocks: list[slice], read: Callable, scheduler: None) -> Blocks:
    for block in blocks:
        out, _ = model(read(block))
        yield block, out


def _outputs_of_block(model: Any, x_block: np.ndarray) -> np.ndarray:
    """One task on a worker: the outputs of one block (the states stay there)."""
    from .dask import forward_block
    return forward_block(model, x_block, None, None)[0]


def _run_on_cluster(model: LSTM, blocks: list[slice], read: Callable, scheduler: str) -> Blocks:
    """Blocks as tasks on the scheduler's workers, a bounded number in flight; yields them
    as they finish (in any order)."""
    try:
        from distributed import Client, as_completed
    except ImportError as error:
        raise RuntimeError("--scheduler needs distributed: pip install '.[dask]' in the nblstm clone") \
            from error
    from .dask import SharedModel

    with Client(scheduler) as client:
        workers = max(len(client.scheduler_info()["workers"]), 1)
        shared = client.scatter(SharedModel(model), broadcast=True)
        pending = iter(blocks)
        running = as_completed()
        block_of = {}

        def submit_next() -> None:
            block = next(pending, None)
            if block is not None:
                # scattered: the block goes to a worker directly, not through the scheduler
                data = client.scatter(read(block), hash=False)
                future = client.submit(_outputs_of_block, shared, data, pure=False)
                block_of[future.key] = block
                running.add(future)

        for _ in range(BLOCKS_IN_FLIGHT_PER_WORKER * workers):
            submit_next()
        for future in running:
            result = future.result()  # a task's exception is raised here
            yield block_of.pop(future.key), result
            future.release()
            submit_next()
