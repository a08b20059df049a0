"""Array type -> backend, and moving arrays between array types.

- NumPy arrays run on the CPU backend (``nblstm.kernels.cpu``).
- GPU arrays run on the CUDA backend (``nblstm.kernels.cuda``): CuPy arrays, numba device
  arrays, the CUDA simulator's arrays (``__cuda_ndarray__``) and anything else exposing
  ``__cuda_array_interface__``.
- Mixed host and device arguments are refused with a ``TypeError`` that says which
  argument lives where: nblstm never copies silently.
- ``backend="cpu" | "cuda"`` forces a backend: inputs are moved there explicitly and the
  results are moved back to the inputs' array type.

Array kinds: ``"numpy"``; ``"cupy"``; ``"numba"`` (numba device arrays, also what a generic
``__cuda_array_interface__`` object becomes), told apart by ``array_kind`` (defined in
``nblstm.kernels.array_kinds`` so the kernels' host code uses the same test). Results have
the kind of the inputs (CuPy in, CuPy out; numba in, numba out). When CuPy works, the CUDA
backend computes on CuPy arrays (cuBLAS GEMMs, CuPy's memory pool), wrapping numba arrays as
zero-copy CuPy views: ``device_array_kind`` is the one place that decides.

This module is the only dispatcher: the seed API, the layer, the training helpers, Dask,
the CLI and the benchmarks all pick backends and move arrays through it.

Nothing here imports CuPy or numba's CUDA target until a GPU array (or ``backend="cuda"``)
actually arrives, so ``import nblstm`` never touches a GPU driver.
"""
import functools
import importlib.util
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from .kernels.array_kinds import (FRAMEWORK_KINDS, array_kind,  # noqa: F401  (re-exported)
                                  framework_device, is_device_array)

BACKEND_NAMES = ("cpu", "cuda")


def array_dtype(value: Any) -> np.dtype:
    """The NumPy dtype of an accepted array. GPU arrays are read through their
    ``__cuda_array_interface__`` when they have one: a bare interface object has no
    ``.dtype``, and a torch CUDA tensor's ``.dtype`` is not a NumPy dtype."""
    if array_kind(value) == "torch":  # torch.float32 is not a NumPy dtype
        name = str(value.dtype).removeprefix("torch.")
        try:
            return np.dtype(name)
        except TypeError:  # bfloat16 and other types NumPy has no name for: a dtype that
            # the checks refuse (never float32/64) and that error messages name correctly
            return np.dtype(np.void(value.element_size()).dtype,
                            metadata={"name": str(value.dtype)})
    interface = getattr(value, "__cuda_array_interface__", None)
    if interface is not None and not isinstance(value, np.ndarray):
        return np.dtype(interface["typestr"])
    return np.dtype(value.dtype)


def dtype_name(dtype: np.dtype) -> str:
    """How error messages name a dtype (a framework's own name where NumPy has none)."""
    return (dtype.metadata or {}).get("name", str(dtype))


def with_array_attributes(value: Any) -> Any:
    """``value``, or for an object that exposes ``__cuda_array_interface__`` without
    ``shape``/``dtype`` attributes, a zero-copy numba device array view of it (so the
    shape checks can read it). Anything else is returned as it is."""
    if (array_kind(value) == "numba" and hasattr(value, "__cuda_array_interface__")
            and not (hasattr(value, "shape") and hasattr(value, "dtype"))):
        return _numba_cuda().as_cuda_array(value)
    return value


def dict_with_array_attributes(mapping: Any) -> Any:
    """``with_array_attributes`` over a dict's values; the same dict when nothing changes."""
    if not isinstance(mapping, dict):
        return mapping
    items = {key: with_array_attributes(value) for key, value in mapping.items()}
    return mapping if all(items[key] is mapping[key] for key in mapping) else items


@functools.cache
def cuda_unavailable_reason() -> str | None:
    """None when the CUDA backend can run here (a GPU, or the CUDA simulator); else why not."""
    if importlib.util.find_spec("numba_cuda") is None:
        return ("numba-cuda is not installed (in the nblstm clone: pip install '.[cuda12]' or '.[cuda13]', "
                "or numba-cuda alone for the CUDA simulator)")
    from .kernels.cuda import target
    return target.unavailable_reason()


@functools.cache
def cupy_usable() -> bool:
    """CuPy is installed and can allocate on a GPU (never in the simulator)."""
    from .kernels.config import SIMULATOR
    if SIMULATOR:
        return False
    try:
        import cupy
        cupy.zeros(1)
        return True
    except Exception:  # not installed, no driver, no device: all mean "don't use CuPy"
        return False


def device_array_kind() -> str:
    """The array kind the CUDA backend computes on when it chooses: ``"cupy"`` when CuPy
    works here, else ``"numba"`` (numba device arrays). The one place that decides."""
    return "cupy" if cupy_usable() else "numba"


def _cupy() -> ModuleType:
    import cupy
    return cupy


def _numba_cuda() -> ModuleType:
    from .kernels.cuda.target import cuda
    return cuda


@dataclass(frozen=True)
class Backend:
    """Where the kernels run (``name``) and the kind of arrays they work on there."""
    name: str
    array_kind: str

    @property
    def xp(self) -> Any:
        """The array module for allocation and layout changes on this backend."""
        if self.array_kind == "numpy":
            return np
        if self.array_kind == "cupy":
            return _cupy()
        from .kernels.cuda.launch import DeviceArrayModule
        return DeviceArrayModule

    @property
    def kernels(self) -> ModuleType:
        """The kernel module (imported on first use, so ``import nblstm`` stays cheap)."""
        if self.name == "cpu":
            from .kernels import cpu
            return cpu
        from .kernels import cuda
        return cuda

    def scratch(self, role: str, shape: tuple, dtype: Any) -> Any:
        """A work array whose contents are undefined, for a step ``role`` of one call: on
        the CPU reused across the calling thread's calls (``kernels/cpu/workspace.py``); on
        a GPU a new array (CuPy's memory pool already reuses device memory). Never returned
        to a caller or kept in a training cache."""
        if self.name == "cpu":
            from .kernels.cpu.workspace import scratch
            return scratch(role, shape, dtype)
        return self.xp.empty(shape, dtype=dtype)

    def adopt(self, array: Any) -> Any:
        """``array`` as this backend's kind: zero-copy between GPU kinds, a transfer
        between host and device (only when a backend was forced)."""
        return convert(array, self.array_kind)


def _kind_name(kind: str) -> str:
    return {"numpy": "a NumPy array", "cupy": "a CuPy array", "numba": "a numba device array",
            "torch": "a torch tensor", "jax": "a JAX array"}.get(kind, kind)


def _framework_view(array: Any) -> Any:
    """A torch or JAX tensor as a zero-copy NumPy array (CPU) or numba device array (CUDA).
    ``TypeError`` for a torch tensor that requires grad (nblstm's backward is explicit)."""
    kind = array_kind(array)
    if kind == "torch":
        if array.requires_grad:
            raise TypeError("a torch tensor that requires grad cannot enter nblstm (its "
                            "gradients come from LSTM.backward, not autograd): pass x.detach()")
        if array.is_neg() or array.is_conj():  # lazy views that DLPack would export wrongly
            raise TypeError("a torch tensor with a pending negation or conjugation (a lazy "
                            "view, e.g. of z.conj().imag): pass x.resolve_neg().resolve_conj()")
        if array.layout is not _torch_strided():
            raise TypeError(f"a torch tensor of layout {array.layout}: nblstm takes dense "
                            f"(strided) tensors; pass x.to_dense()")
    try:
        if framework_device(array) == "cpu":
            return np.from_dlpack(array)
        return _numba_cuda().as_cuda_array(array)  # zero-copy through __cuda_array_interface__
    except (RuntimeError, BufferError, ValueError) as error:  # e.g. dtypes DLPack cannot carry
        raise TypeError(f"a {kind} array of dtype {array.dtype} cannot be viewed as a NumPy or "
                        f"CUDA array ({error}): nblstm takes float32/float64 data (and "
                        f"integer lengths or labels)") from error


def _torch_strided():
    import torch  # only reached with a torch tensor in hand
    return torch.strided


def _to_framework(array: Any, framework: str) -> Any:
    """A NumPy, CuPy or numba array as a ``framework`` tensor, zero-copy where possible
    (NumPy -> CPU tensor; device arrays -> CUDA tensor)."""
    if framework == "torch":
        import torch  # only reached with torch tensors as inputs
        if isinstance(array, np.ndarray):
            return torch.from_numpy(array if array.flags.writeable else array.copy())
        return torch.as_tensor(array, device="cuda")  # __cuda_array_interface__, zero-copy
    import jax.dlpack  # only reached with JAX arrays as inputs
    if array_kind(array) == "numba":
        array = convert(array, "cupy") if cupy_usable() else convert(array, "numpy")
    return jax.dlpack.from_dlpack(array)


def convert(array: Any, kind: str) -> Any:
    """``array`` as an array of ``kind`` (the same object when it already is one). torch and
    JAX tensors go through their zero-copy NumPy or numba view."""
    source = array_kind(array)
    if source == kind:
        return array
    if source in FRAMEWORK_KINDS:
        return convert(_framework_view(array), kind)
    if kind in FRAMEWORK_KINDS:
        return _to_framework(array, kind)
    if kind == "numpy":
        if source == "cupy":
            return _cupy().asnumpy(array)
        # numba device array (or a bare __cuda_array_interface__ object): copy_to_host
        # needs one contiguous block, and cache entries are strided views
        from .kernels.cuda.launch import DeviceArrayModule
        device = array if hasattr(array, "copy_to_host") else _numba_cuda().as_cuda_array(array)
        return DeviceArrayModule.ascontiguousarray(device).copy_to_host()
    if kind == "cupy":
        interface = getattr(array, "__cuda_array_interface__", None)
        if interface is not None and interface["data"][0] == 0:
            # an empty device array has a null pointer, which CuPy refuses to wrap
            return _cupy().empty(interface["shape"], dtype=np.dtype(interface["typestr"]))
        return _cupy().asarray(array)  # zero-copy from numba arrays, a transfer from NumPy
    if source == "numpy":
        return _numba_cuda().to_device(np.ascontiguousarray(array))  # needs one memory block
    return _numba_cuda().as_cuda_array(array)  # zero-copy view


def may_share_memory(a: Any, b: Any) -> bool:
    """Whether two arrays of one kind may share memory (False only when they surely do not):
    NumPy's bounds test on the host, the data pointers' byte ranges on a GPU."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    ranges = []
    for array in (a, b):
        interface = getattr(array, "__cuda_array_interface__", None)
        if interface is None:
            return True  # cannot tell: assume they do
        shape = tuple(interface["shape"])
        if 0 in shape:
            return False  # an empty array holds no memory
        itemsize = np.dtype(interface["typestr"]).itemsize
        strides = interface.get("strides") or tuple(
            int(np.prod(shape[k + 1:], dtype=np.int64)) * itemsize for k in range(len(shape)))
        low = high = interface["data"][0]
        for n, stride in zip(shape, strides):  # the byte range the view can touch
            reach = (n - 1) * stride
            low, high = (low + reach, high) if reach < 0 else (low, high + reach)
        ranges.append((low, high + itemsize))
    (a0, a1), (b0, b1) = ranges
    return a0 < b1 and b0 < a1


def transposed(array: Any, axes: tuple | None = None) -> Any:
    """A zero-copy view with the axes permuted (reversed by default: ``array.T``) for every
    array kind.

    numba's ``DeviceNDArray.T`` is not a view on a real GPU: it compiles and launches a
    transpose kernel on every call, so numba device arrays get a strided view instead.
    """
    if array_kind(array) == "numba":
        from .kernels.cuda.launch import DeviceArrayModule
        return DeviceArrayModule.transpose(array, axes)
    return array.T if axes is None else array.transpose(axes)


def convert_results(result: Any, kind: str) -> Any:
    """``convert`` applied through tuples, lists and dicts; containers whose contents do not
    change are returned as they are (so a cache keeps the caller's parameter dict)."""
    if isinstance(result, (tuple, list)):
        items = [convert_results(item, kind) for item in result]
        if all(new is old for new, old in zip(items, result)):
            return result
        return tuple(items) if isinstance(result, tuple) else list(items)
    if isinstance(result, dict):
        items = {key: convert_results(value, kind) for key, value in result.items()}
        if all(items[key] is result[key] for key in result):
            return result
        return items
    if array_kind(result) is not None:
        return convert(result, kind)
    return result


CPU = Backend("cpu", "numpy")


def _not_an_array(name: str, value: Any) -> TypeError:
    return TypeError(f"{name} must be an array (numpy.ndarray, or a GPU array: CuPy, numba "
                     f"device array, __cuda_array_interface__), "
                     f"got {type(value).__module__}.{type(value).__qualname__}")


def backend_named(name: str, why: str | None = None) -> Backend:
    """The backend ``"cpu"`` or ``"cuda"`` (CuPy arrays when CuPy works, else numba device
    arrays). ``ValueError`` for another name; ``RuntimeError`` when CUDA is unavailable,
    starting with ``why`` (what asked for it) and saying what is missing."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}, "
                         f"got {name!r}")
    if name == "cpu":
        return CPU
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"{why or 'the CUDA backend was requested'}, but the CUDA backend "
                           f"is unavailable: {reason}")
    return Backend("cuda", device_array_kind())


def select_backend(named_arrays: dict[str, Any], backend: str | None = None,
                   remedy: str = "move them to one place first, or pass backend='cpu' or "
                                 "'cuda'") -> tuple[Backend, str]:
    """The backend for these arguments (``{name: value}``) and the arguments' array kind.

    ``TypeError`` for an argument that is not an array, or for host and device arguments
    mixed (the message ends with ``remedy``); ``ValueError`` for an unknown ``backend``;
    ``RuntimeError`` when CUDA is needed but unavailable (the message says why).
    """
    if backend is not None and backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))} or None, "
                         f"got {backend!r}")
    kinds = {}
    for name, value in named_arrays.items():
        kind = array_kind(value)
        if kind is None:
            raise _not_an_array(name, value)
        kinds[name] = kind
    on_gpu = [name for name, value in named_arrays.items() if is_device_array(value)]
    on_host = [name for name in kinds if name not in on_gpu]
    if on_host and on_gpu:
        raise TypeError(f"arguments live on different devices: {', '.join(on_host)} on the host "
                        f"(NumPy), {', '.join(on_gpu)} on the GPU; nblstm does not copy silently: "
                        f"{remedy}")
    frameworks = check_one_framework(named_arrays)
    if frameworks:
        origin = frameworks.pop()
    else:
        origin = "numpy" if on_host else ("cupy" if "cupy" in kinds.values() else "numba")
    target = backend or ("cuda" if on_gpu else "cpu")
    if target == "cpu":
        return CPU, origin
    why = f"{on_gpu[0]} is a GPU array" if on_gpu else "backend='cuda' was requested"
    chosen = backend_named("cuda", why)
    if origin == "cupy":  # CuPy arrays in hand: compute on CuPy whatever cupy_usable says
        chosen = Backend("cuda", "cupy")
    return chosen, origin


def check_one_framework(named_arrays: dict[str, Any]) -> set:
    """The tensor frameworks (torch, JAX) among these arrays (``None`` values skipped);
    ``TypeError`` naming each argument's kind when such tensors are mixed with arrays of any
    other kind: results come back as the inputs' kind, so it must be unambiguous."""
    kinds = {name: array_kind(value) for name, value in named_arrays.items()
             if value is not None}
    frameworks = {kind for kind in kinds.values() if kind in FRAMEWORK_KINDS}
    if frameworks and len(set(kinds.values())) > 1:
        found = ", ".join(f"{name} is {_kind_name(kind)}" for name, kind in kinds.items())
        raise TypeError(f"arguments mix array types: {found}; pass one kind of array (results "
                        f"come back as the inputs' kind)")
    return frameworks


def check_on_backend(name: str, value: Any, backend: Backend, where: str, remedy: str) -> str:
    """``value`` must be an array on ``backend``'s side (host for the CPU, GPU for CUDA);
    returns its array kind. ``TypeError`` otherwise: "``name`` is a GPU array but ``where``:
    ``remedy``"."""
    kind = array_kind(value)
    if kind is None:
        raise _not_an_array(name, value)
    on_gpu = is_device_array(value)
    if on_gpu != (backend.name == "cuda"):
        here = "a GPU array" if on_gpu else "a NumPy (host) array"
        raise TypeError(f"{name} is {here} but {where}: {remedy}")
    return kind
