"""Moving an LSTM between nblstm and ``torch.nn.LSTM``: configuration and weights.

torch is never imported here unless the caller already holds a torch object (``read_module``
looks it up in ``sys.modules``) or asks for a torch module (``build_module``). The parameter
names, shapes and gate order (i, f, g, o) are the same on both sides, so weights are copied
as they are: the round trip is exact.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np


def read_module(module: Any) -> tuple[dict, dict[str, np.ndarray], bool]:
    """``(config, {name: NumPy copy of the weight}, on_gpu)`` of a ``torch.nn.LSTM``;
    ``config`` holds nblstm.LSTM's constructor arguments (``proj_size`` and ``dropout``
    included). ``TypeError`` for any other module (a GRU or RNN has other weights and gates)
    or dtype."""
    torch = sys.modules.get("torch")  # a torch module in hand means torch is imported
    if torch is None or not isinstance(module, torch.nn.LSTM):
        kind = type(module)
        raise TypeError(f"module must be a torch.nn.LSTM, got {kind.__module__}."
                        f"{kind.__qualname__} (GRU, RNN and other modules have other "
                        f"weights and gates)")
    weights = {name: value.detach() for name, value in module.named_parameters()}
    first = next(iter(weights.values()))
    if first.device.type not in ("cpu", "cuda"):
        raise TypeError(f"module's parameters are on device {first.device.type!r}: nblstm "
                        f"copies weights from the CPU or a CUDA GPU (module.to('cpu'))")
    dtype = {torch.float32: "float32", torch.float64: "float64"}.get(first.dtype)
    if dtype is None:
        raise TypeError(f"module's parameters are {first.dtype}; nblstm supports float32 "
                        f"and float64 (convert with module.float() or module.double())")
    config = {"input_size": module.input_size, "hidden_size": module.hidden_size,
              "num_layers": module.num_layers, "bias": module.bias,
              "batch_first": module.batch_first, "bidirectional": module.bidirectional,
              "dtype": dtype, "dropout": float(module.dropout),
              "proj_size": int(getattr(module, "proj_size", 0))}
    host = {name: value.cpu().numpy().copy() for name, value in weights.items()}
    return config, host, bool(first.is_cuda)


def build_module(config: dict, weights: dict[str, np.ndarray], on_gpu: bool = False) -> Any:
    """A ``torch.nn.LSTM`` of ``config`` (nblstm.LSTM's ``config()``) holding copies of
    ``weights`` (NumPy arrays under torch's names), on the GPU if ``on_gpu``. A model with
    peephole connections is a ``ValueError``: torch's LSTM has none."""
    if config.get("peephole"):
        raise ValueError("this LSTM has peephole connections (peephole=True), which "
                         "torch.nn.LSTM does not have: it cannot be converted (to_onnx can "
                         "export it)")
    import torch
    module = torch.nn.LSTM(config["input_size"], config["hidden_size"], config["num_layers"],
                           bias=config["bias"], batch_first=config["batch_first"],
                           bidirectional=config["bidirectional"],
                           dropout=config.get("dropout", 0.0),
                           proj_size=config.get("proj_size", 0),
                           dtype=getattr(torch, config["dtype"]))
    with torch.no_grad():
        for name, value in module.named_parameters():
            value.copy_(torch.from_numpy(weights[name]))
    return module.to("cuda") if on_gpu else module
