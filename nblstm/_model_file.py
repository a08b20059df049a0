"""The ``LSTM.save`` file: an ``.npz`` archive, written atomically, read without trusting it.

Layout: one ``.npy`` member per parameter (torch's names, e.g. ``weight_ih_l0.npy``) plus
``__nblstm__.npy``, a 0-d unicode array holding a JSON header::

    {"format": "nblstm.LSTM", "version": 1,
     "config": {"input_size": 8, "hidden_size": 32, "num_layers": 1, "bias": true,
                "batch_first": false, "bidirectional": false, "dtype": "float32",
                "dropout": 0.0, "proj_size": 0, "peephole": false}}

``dropout``, ``proj_size`` and ``peephole`` are optional (files written before they existed
lack them and mean 0 / false). The dropout generator's state is not saved: a loaded model draws fresh masks.

Reading checks, in this order, before any parameter is decompressed or allocated:
1. the file is a zip archive (else: what it is instead, e.g. a ``.npy`` array);
2. the header member exists, is small (``MAX_HEADER_BYTES``), and is a 0-d unicode array;
3. the JSON nests at most ``MAX_JSON_DEPTH`` levels and follows the schema exactly (keys,
   JSON types, ranges: ``MAX_SIZE``);
4. the member names are exactly the header member and the parameters the configuration
   implies (an unexpected member, however large, is never decompressed);
5. each parameter's ``.npy`` header (read alone) declares the expected shape and dtype, and
   the zip directory's uncompressed size agrees with it (a member cannot inflate past it).
Any failure is a ``ValueError`` naming the file and the problem.
"""
from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from ._files import atomic_open
from ._validate import describe_shape, key_mismatch

FORMAT = "nblstm.LSTM"
VERSION = 1
HEADER_MEMBER = "__nblstm__"
#: Upper bounds the reader enforces (far above any real model; they stop absurd headers).
MAX_HEADER_BYTES = 1 << 16
MAX_JSON_DEPTH = 4
MAX_SIZE = 1 << 20  # input_size, hidden_size
MAX_LAYERS = 1 << 10
#: A parameter member of more than ``RATIO_FLOOR_BYTES`` may inflate at most this much:
#: ``save`` stores members (ratio 1) and ``savez_compressed`` float weights reach ~1.1, so a
#: higher ratio is a decompression bomb, not a model.
MAX_COMPRESSION_RATIO = 50
RATIO_FLOOR_BYTES = 1 << 20

#: The configuration's keys and their checks: JSON type (bool is not an int here).
CONFIG_SCHEMA: dict[str, Callable[[Any], bool]] = {
    "input_size": lambda v: type(v) is int and 1 <= v <= MAX_SIZE,
    "hidden_size": lambda v: type(v) is int and 1 <= v <= MAX_SIZE,
    "num_layers": lambda v: type(v) is int and 1 <= v <= MAX_LAYERS,
    "bias": lambda v: type(v) is bool,
    "batch_first": lambda v: type(v) is bool,
    "bidirectional": lambda v: type(v) is bool,
    "dtype": lambda v: v in ("float32", "float64"),
    "dropout": lambda v: type(v) in (int, float) and 0 <= v <= 1,
    "proj_size": lambda v: type(v) is int and 0 <= v <= MAX_SIZE,
    "peephole": lambda v: type(v) is bool,
}
CONFIG_EXPECTED = {"input_size": f"an integer in 1..{MAX_SIZE}",
                   "hidden_size": f"an integer in 1..{MAX_SIZE}",
                   "num_layers": f"an integer in 1..{MAX_LAYERS}",
                   "bias": "true or false", "batch_first": "true or false",
                   "bidirectional": "true or false", "dtype": '"float32" or "float64"',
                   "dropout": "a number in [0, 1]", "proj_size": f"an integer in 0..{MAX_SIZE}",
                   "peephole": "true or false"}
#: Keys files written before they existed lack, and the value such a file means.
OPTIONAL_CONFIG = {"dropout": 0.0, "proj_size": 0, "peephole": False}


def write(path: str, config: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write the model file atomically (``nblstm._files``)."""
    header = json.dumps({"format": FORMAT, "version": VERSION, "config": config})
    with atomic_open(path, "wb") as file:
        np.savez(file, **{HEADER_MEMBER: np.array(header)}, **arrays)


def _what_it_is(path: str) -> str:
    """A short description of a file that is not a zip archive, from its first bytes."""
    try:
        with open(path, "rb") as file:
            start = file.read(8)
    except OSError as error:
        return f"unreadable ({error})"
    if start.startswith(b"\x93NUMPY"):
        return "a .npy array file (np.save), not an .npz model written by LSTM.save"
    if not start:
        return "an empty file"
    return "not a zip (.npz) archive"


def _json_depth(text: str) -> int:
    """How deeply ``text``'s JSON arrays and objects nest (strings skipped); no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _npy_header(archive: zipfile.ZipFile, member: str) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, header_bytes)`` of a ``.npy`` member, reading only its
    header (a few hundred bytes decompressed)."""
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        return tuple(shape), bool(fortran), np.dtype(dtype), stream.tell()


def _read_header(path: str, archive: zipfile.ZipFile) -> dict:
    member = HEADER_MEMBER + ".npy"
    if member not in archive.namelist():
        raise ValueError(f"{path} is not an nblstm LSTM file (no {HEADER_MEMBER} header)")
    info = archive.getinfo(member)
    if info.file_size > MAX_HEADER_BYTES:
        raise ValueError(f"{path} has a bad nblstm header: {info.file_size} bytes, more than "
                         f"{MAX_HEADER_BYTES}")
    shape, _, dtype, _ = _npy_header(archive, member)
    if shape != () or dtype.kind != "U":
        raise ValueError(f"{path} has a bad nblstm header: expected a 0-d unicode array, got "
                         f"{dtype} {describe_shape(shape)}")
    with archive.open(member) as stream:
        text = str(np.lib.format.read_array(stream, allow_pickle=False))
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"{path} has a bad nblstm header: JSON nested more than "
                         f"{MAX_JSON_DEPTH} levels")
    def no_duplicate_keys(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    try:
        header = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except ValueError as error:
        raise ValueError(f"{path} has a bad nblstm header: not JSON ({error})") from error
    return header


def _checked_config(path: str, header: Any) -> dict:
    bad = f"{path} has a bad nblstm header"
    if not isinstance(header, dict) or set(header) != {"format", "version", "config"}:
        keys = sorted(header) if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{bad}: expected the keys format, version, config; got {keys}")
    if header["format"] != FORMAT:
        raise ValueError(f"{bad}: format {header['format']!r}, expected {FORMAT!r}")
    if type(header["version"]) is not int or header["version"] != VERSION:
        raise ValueError(f"{bad}: version {header['version']!r}, this nblstm reads {VERSION}")
    config = header["config"]
    required = set(CONFIG_SCHEMA) - set(OPTIONAL_CONFIG)
    if (not isinstance(config, dict) or not required <= set(config)
            or not set(config) <= set(CONFIG_SCHEMA)):
        found = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{bad}: config must have the keys "
                         f"{', '.join(k for k in CONFIG_SCHEMA if k in required)} (and "
                         f"optionally {', '.join(OPTIONAL_CONFIG)}); got {found}")
    config = {**OPTIONAL_CONFIG, **config}
    for key, valid in CONFIG_SCHEMA.items():
        if not valid(config[key]):
            raise ValueError(f"{bad}: config {key} must be {CONFIG_EXPECTED[key]}, got "
                             f"{json.dumps(config[key])}")
    if config["proj_size"] >= config["hidden_size"]:
        raise ValueError(f"{bad}: config proj_size must be smaller than hidden_size "
                         f"({config['hidden_size']}), got {config['proj_size']}")
    if config["peephole"] and config["proj_size"]:
        raise ValueError(f"{bad}: config peephole and proj_size cannot be combined (no LSTM "
                         f"convention has both)")
    return config


def read(path: str, parameter_shapes: Callable[[dict], dict[str, tuple]]
         ) -> tuple[dict, dict[str, np.ndarray]]:
    """``(config, {name: array})`` from a model file, checked as the module docstring says.
    ``parameter_shapes(config)`` gives the expected ``{name: shape}`` without building a
    model. ``FileNotFoundError`` for a missing file; ``ValueError`` for everything else."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not an .npz model file")
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a readable .npz file: it is "
                         f"{_what_it_is(path)} ({error})") from error
    with archive:
        try:
            members = archive.namelist()
            if len(members) != len(set(members)):
                twice = sorted({m for m in members if members.count(m) > 1})
                raise ValueError(f"{path} has duplicate members {twice}: a zip reader could "
                                 f"take either, so the file means two different models")
            config = _checked_config(path, _read_header(path, archive))
            expected = parameter_shapes(config)
            dtype = np.dtype(config["dtype"])
            names = set(archive.namelist())
            wanted = {name + ".npy" for name in expected} | {HEADER_MEMBER + ".npy"}
            if names != wanted:
                members = [m[:-4] if m.endswith(".npy") else m for m in archive.namelist()]
                raise ValueError(f"{path}: parameters do not match the configuration: the file "
                                 f"has {key_mismatch(members, [*expected, HEADER_MEMBER])}")
            for name, shape in expected.items():
                member = name + ".npy"
                found_shape, _, found_dtype, header_bytes = _npy_header(archive, member)
                if found_shape != shape or found_dtype != dtype:
                    raise ValueError(f"{path}: parameter {name} is {found_dtype} "
                                     f"{describe_shape(found_shape)}, expected {dtype.name} "
                                     f"{describe_shape(shape)}")
                declared = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                info = archive.getinfo(member)
                if info.file_size != declared:
                    raise ValueError(f"{path}: parameter {name} holds {info.file_size} bytes, "
                                     f"its header declares {declared}")
                if (info.file_size > RATIO_FLOOR_BYTES
                        and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)):
                    raise ValueError(f"{path}: parameter {name} inflates {info.compress_size} "
                                     f"bytes to {info.file_size} (more than "
                                     f"{MAX_COMPRESSION_RATIO}x): a decompression bomb, not "
                                     f"a saved model")
            arrays = {}
            for name in expected:
                with archive.open(name + ".npy") as stream:
                    arrays[name] = np.ascontiguousarray(
                        np.lib.format.read_array(stream, allow_pickle=False))
        except ValueError:
            raise
        except Exception as error:  # zip/npy decoding errors of any kind: a damaged file
            raise ValueError(f"{path} is a damaged .npz file: {error}") from error
    return config, arrays
