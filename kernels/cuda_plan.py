"""Which recurrence tier a CUDA forward pass runs (``NBLSTM_CUDA_RECURRENCE``).

Outside ``kernels/cuda/`` on purpose: importing this module imports no CUDA target, so
``nblstm info`` and the benchmarks can describe the setting on any machine. The tiers are
``kernels/cuda/recurrence.py``'s: ``rows`` and ``units`` run every step of a forward pass
or of BPTT in one persistent launch, ``steps`` one GEMM and one gate launch per step.
"""
from __future__ import annotations

import os
from typing import Callable

from .config import CUDA_UNITS_MAX_BATCH

ENVIRONMENT_VARIABLE = "NBLSTM_CUDA_RECURRENCE"
TIERS = ("auto", "rows", "units", "steps")


def choice() -> str:
    """``NBLSTM_CUDA_RECURRENCE`` (default ``auto``); any other value is a ``ValueError``."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto").strip().lower() or "auto"
    if value not in TIERS:
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={os.environ.get(ENVIRONMENT_VARIABLE)!r} is "
                         f"not one of {', '.join(TIERS)}")
    return value


def describe() -> str:
    """One line for ``nblstm info`` and the benchmarks: the setting and what it does."""
    value = choice()
    rule = {"auto": f"units up to B = {CUDA_UNITS_MAX_BATCH} where a cooperative launch "
                    f"works, rows above (and where it does not); steps for proj_size",
            "rows": "forced: blocks of batch rows, all steps in one launch",
            "units": "forced: slices of hidden units over the grid, one grid barrier per step",
            "steps": "forced: one GEMM and one gate launch per step"}[value]
    return f"{ENVIRONMENT_VARIABLE}={value} ({rule})"


def choose(B: int, persistent: bool,
           cooperative_blocks: Callable[[], tuple[int, str]]) -> str:
    """The tier a forward pass of batch ``B`` runs: ``rows``, ``units`` or ``steps``.

    ``persistent``: False for a model the persistent tiers do not run (a projection,
    ``proj_size``: one more GEMM inside every step). ``cooperative_blocks()``: how many blocks a cooperative grid
    of the ``units`` kernel may have on this device (0 when cooperative launch fails).
    A forced tier that cannot run raises ``RuntimeError`` naming the limit: a test that
    forces a tier proves it ran.
    """
    value = choice()
    if value == "steps":
        return "steps"
    if not persistent:
        if value != "auto":
            raise RuntimeError(f"{ENVIRONMENT_VARIABLE}={value}: the persistent tiers do not "
                               f"run a projection (proj_size) (use {ENVIRONMENT_VARIABLE}=auto "
                               f"or steps)")
        return "steps"
    if value == "rows":
        return "rows"
    if value == "units" or B <= CUDA_UNITS_MAX_BATCH:
        blocks, why = cooperative_blocks()
        if blocks >= 1:
            return "units"
        if value == "units":
            raise RuntimeError(f"{ENVIRONMENT_VARIABLE}=units needs a cooperative launch, "
                               f"which this device cannot run ({why})")
    return "rows"
