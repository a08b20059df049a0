"""Where the time goes in nblstm's CPU kernels, for one mid and one large shape.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_breakdown.py

For each pass, times (steady state, ``nblstm._timing``: median of 5 samples of back-to-back
calls, in one process) the whole kernel and the pieces it is made of, run alone on the same
buffers: its GEMMs (``kernels/cpu/gemm_floor.py``) and its fused
gate loops. "rest" is what neither explains: bias pass, copies, allocation and page faults,
and the time the BLAS threads spend idle while the (single-threaded) gate loop runs.
"""
import numpy as np

from nblstm import _timing, bench, ops
from nblstm._dispatch import CPU
from nblstm.kernels import cpu
from nblstm.kernels.cpu import gemm_floor



def median_ms(fn, n=5):
    fn()
    return _timing.median(_timing.time_steady({"run": fn}, samples=n)["run"]) * 1e3


def main():
    for shape in [(100, 64, 256, 256), (100, 128, 512, 512)]:
        for dt in (np.float32, np.float64):
            a = bench.Case(*shape, np.dtype(dt)).build().arrays
            T, B, X, H = shape
            h_all, c_all = np.empty((T, B, H), dt), np.empty((T, B, H), dt)
            gates = np.empty((T, B, 4 * H), dt)
            args = (a["x"], a["h0"], a["c0"], a["W_x"], a["W_h"], a["b"])
            forward = median_ms(lambda: cpu.lstm_sequence_forward(*args, h_all, c_all, gates))
            z_h, z_all = np.zeros((B, 4 * H), dt), np.empty_like(gates)
            forward_gemms = median_ms(lambda: gemm_floor.forward_gemms(
                a["x"], a["W_x"], a["W_h"], h_all, z_all, z_h))
            scratch = gates.copy()

            def gate_loops():
                for t in range(T):
                    cpu.lstm_gates_forward(scratch[t], z_h, c_all[t - 1] if t else a["c0"],
                                           c_all[t], h_all[t])
            forward_gates = median_ms(gate_loops)
            zeros = np.zeros((B, H), dt)
            backward = median_ms(lambda: ops.sequence_backward(
                CPU, *args[:5], h_all, c_all, gates, a["d_out"], zeros, zeros))
            W_x_T, W_h_T = np.ascontiguousarray(a["W_x"].T), np.ascontiguousarray(a["W_h"].T)
            dh, dx = np.empty((B, H), dt), np.empty_like(a["x"])
            dW_x, dW_h = np.empty_like(a["W_x"]), np.empty_like(a["W_h"])
            backward_gemms = median_ms(lambda: gemm_floor.backward_gemms(
                a["x"], W_x_T, W_h_T, h_all, gates, dh, dx, dW_x, dW_h))
            dz, dc = np.empty((B, 4 * H), dt), np.zeros((B, H), dt)

            def backward_gate_loops():
                for t in range(T):
                    cpu.lstm_gates_backward(gates[t], c_all[t - 1] if t else a["c0"], c_all[t],
                                            a["d_out"][t], dc, dz)
            backward_gates = median_ms(backward_gate_loops)
            print(f"{shape} {np.dtype(dt).name}: forward {forward:.1f} ms = GEMMs {forward_gemms:.1f} "
                  f"+ gate loops {forward_gates:.1f} + rest {forward - forward_gemms - forward_gates:.1f}"
                  f" | backward {backward:.1f} ms = GEMMs {backward_gemms:.1f} + gate loops "
                  f"{backward_gates:.1f} + rest {backward - backward_gemms - backward_gates:.1f}")


if __name__ == "__main__":
    main()
