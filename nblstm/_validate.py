"""Argument checks shared by every public function.

Every error names the argument (or parameter key), what was expected and what was found.
Wrong kind of object or dtype -> ``TypeError``; wrong ndim, shape or size -> ``ValueError``.
The checks only read attributes (``dtype``, ``shape``), so they behave the same for NumPy
and GPU arrays.
"""
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._dispatch import array_dtype, dtype_name

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: The seed's parameter dict, in the order the course lists it.
SEED_PARAMETER_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")


def describe_shape(shape: tuple) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def common_float_dtype(named_arrays: dict[str, Any]) -> np.dtype:
    """The one float dtype shared by all arrays; ``TypeError`` otherwise."""
    dtypes = {}
    for name, array in named_arrays.items():
        dtype = array_dtype(array)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {dtype_name(dtype)}; expected float32 or float64")
        dtypes[name] = dtype
    if len(set(dtypes.values())) > 1:
        found = ", ".join(f"{name} is {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"all arrays must share one dtype (float32 or float64), but {found}")
    return next(iter(dtypes.values()))


def check_ndim(name: str, array: Any, ndim: int, layout: str) -> None:
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        raise TypeError(f"{name} must be an array of shape {layout}, "
                        f"got {type(array).__module__}.{type(array).__qualname__}")
    if len(array.shape) != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape {layout}, got a "
                         f"{len(array.shape)}-D array of shape {describe_shape(array.shape)}")


def check_shape(name: str, array: Any, expected: tuple, layout: str) -> None:
    """``array.shape == expected``; ``layout`` names the axes, e.g. ``"(n_a, m)"``."""
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {layout} = {describe_shape(expected)}, "
                         f"got {describe_shape(array.shape)}")


def check_nonempty(name: str, array: Any, layout: str) -> None:
    if any(int(n) < 1 for n in array.shape):
        raise ValueError(f"{name} has shape {describe_shape(array.shape)}; every axis of "
                         f"{layout} must have length at least 1")


def key_mismatch(found: Any, expected: Any) -> str | None:
    """``"missing key(s) 'a', 'b' and unexpected key(s) 'c'"`` for two collections of keys
    (expected first, then found order), or None when they hold the same keys. Every check
    of a dict's keys words its error with this."""
    found, expected = list(found), list(expected)
    missing = [repr(key) for key in expected if key not in found]
    extra = [repr(key) for key in found if key not in expected]
    problems = (["missing key(s) " + ", ".join(missing)] if missing else []) + \
               (["unexpected key(s) " + ", ".join(extra)] if extra else [])
    return " and ".join(problems) or None


def check_seed_parameters(parameters: Any) -> None:
    """The parameter dict holds exactly the seed's keys (shapes are checked by the caller)."""
    if not isinstance(parameters, Mapping):
        raise TypeError(f"parameters must be a dict with keys {', '.join(SEED_PARAMETER_KEYS)}; "
                        f"got {type(parameters).__name__}")
    mismatch = key_mismatch(parameters, SEED_PARAMETER_KEYS)
    if mismatch:
        raise ValueError(f"parameters has {mismatch}; expected exactly the keys "
                         f"{', '.join(SEED_PARAMETER_KEYS)}")


def check_seed_parameter_shapes(parameters: Mapping, n_a: int, n_x: int) -> None:
    """Shapes of the seed's parameters for hidden size ``n_a`` and input size ``n_x``."""
    for gate in "fico":
        check_shape(f"parameters['W{gate}']", parameters["W" + gate], (n_a, n_a + n_x),
                    "(n_a, n_a + n_x)")
        check_shape(f"parameters['b{gate}']", parameters["b" + gate], (n_a, 1), "(n_a, 1)")
    check_ndim("parameters['Wy']", parameters["Wy"], 2, "(n_y, n_a)")
    n_y = parameters["Wy"].shape[0]
    check_shape("parameters['Wy']", parameters["Wy"], (n_y, n_a), "(n_y, n_a)")
    check_nonempty("parameters['Wy']", parameters["Wy"], "(n_y, n_a)")
    check_shape("parameters['by']", parameters["by"], (n_y, 1), "(n_y, 1)")
