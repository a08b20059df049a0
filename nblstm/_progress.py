"""The one progress bar of nblstm's commands (bench, demos, infer): tqdm on stderr when it is
installed, else a plain counter line on stderr; nothing at all when disabled.

    with progress_bar(total, "digits", unit="step") as bar:
        bar.update()                     # one unit done (bar.update(n): n units)
        bar.set_postfix(loss="0.12")     # extra fields shown after the count
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _PlainCounter:
    """tqdm's ``update``/``set_postfix``/``close`` as a ``\\r``-rewritten line, redrawn at every
    tenth of the total (not at every step: stderr may be a log file)."""

    def __init__(self, total: int, description: str, unit: str, enabled: bool) -> None:
        self.total, self.description, self.unit, self.enabled = total, description, unit, enabled
        self.count, self.postfix, self._shown, self._drawn = 0, "", -1, False

    def update(self, n: int = 1) -> None:
        self.count += n
        tenth = self.count * 10 // max(self.total, 1)
        if self.enabled and (tenth != self._shown or self.count >= self.total):
            self._shown = tenth
            self._drawn = True
            print(f"\r{self.description}: {self.count}/{self.total} {self.unit}s{self.postfix}",
                  end="", file=sys.stderr, flush=True)

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = "".join(f", {key}={value}" for key, value in values.items())

    def close(self) -> None:
        if self._drawn:
            print(file=sys.stderr)
            self._drawn = False


@contextmanager
def progress_bar(total: int, description: str, unit: str = "it",
                 enabled: bool = True) -> Iterator[Any]:
    """A progress bar over ``total`` units (module docstring); closed when the block ends."""
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=description, unit=unit, disable=not enabled,
                   file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        bar = _PlainCounter(total, description, unit, enabled)
    try:
        yield bar
    finally:
        bar.close()
