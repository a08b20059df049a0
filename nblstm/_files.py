"""Writing files atomically: the one helper every nblstm writer uses.

``atomic_path(path)`` yields the name of a new temporary file beside ``path``; when the
``with`` block ends without an exception, the temporary is flushed to disk (``fsync``), given
the permissions a plain ``open(path, "w")`` would have given ``path``, and renamed over
``path`` in one step. On any exception it is removed and ``path`` is left as it was.
``atomic_open(path, mode)`` is the same around an open file object.

Why each step:
- The temporary is created by ``tempfile.mkstemp`` in the target's directory: an
  unpredictable name opened with ``O_CREAT | O_EXCL``, so a symlink or file planted by
  someone else is never followed or clobbered, and concurrent writers (threads or
  processes) never share a temporary. The rename is atomic only within one file system,
  hence the target's directory.
- ``mkstemp`` creates files readable by the owner only (0600); the final file gets
  ``0o666 & ~umask`` as ``open()`` would, or keeps the mode of the file it replaces.
- ``fsync`` before the rename: after a crash the name holds either the old file or the
  complete new one, never a truncated one.
- A symlink at ``path`` is replaced by the new file and its target is left untouched:
  following it could overwrite a file the caller never named (in a shared folder, anyone
  can plant a link). Likewise a hard link to the old file keeps the old contents. A
  read-only file at ``path`` is refused (``PermissionError``), as ``open()`` would.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process's umask, without changing it where the OS can tell (Linux /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (briefly process-wide, so serialised)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """The permissions ``open(path, "w")`` would leave ``path`` with."""
    try:
        existing = os.lstat(path)  # a symlink is replaced, not followed: umask then
        if stat.S_ISREG(existing.st_mode):
            return stat.S_IMODE(existing.st_mode)
    except OSError:
        pass
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name to write ``path``'s new contents to (module docstring)."""
    path = os.fsdecode(os.fspath(path))
    if os.path.isfile(path) and not os.path.islink(path) and not os.access(path, os.W_OK):
        # open(path, "w") would refuse; the rename would not (it needs the folder only)
        raise PermissionError(errno.EACCES, "Permission denied (the file is read-only)", path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as error:  # name the file the caller asked for, not the temporary
        raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from error
    os.close(descriptor)
    try:
        yield temporary
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.chmod(temporary, _final_mode(path))
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """``open(path, mode)`` for writing, atomically (module docstring); ``mode`` is
    ``"w"``/``"wb"`` (text or binary)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as temporary:
        with open(temporary, mode) as file:
            yield file


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one existing file (through links, ``..``, hard links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be read): not the same file
        return False
