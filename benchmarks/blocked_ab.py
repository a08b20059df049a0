"""A/B of the CPU inference paths at one or more shapes, in one process: the batch-blocked
loops (kernels/cpu/blocked_lstm.py) at several block sizes (ROWS=24,48,96) against the
per-step pass that ops.sequence_inference ran before them, with % of the 2048^3 GEMM peak
measured in the same process. Usage:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/blocked_ab.py float32 50,1024,64,128
Medians of 5 back-to-back calls after one warm-up call."""
import sys, time, numpy as np, os
from nblstm.kernels.cpu import blocked_lstm, packed_gemm
from nblstm.kernels.cpu import plan as P
from nblstm.kernels.config import TILES
import numba
def mk(tile, dtype, rows, parallel=True):
    MR, vb = TILES[tile]
    return P.Plan(tile, packed_gemm.TILE_IDS[tile], MR, vb // np.dtype(dtype).itemsize, parallel, numba.get_num_threads() if parallel else 1, True, rows)
def best(f, n=5):
    f(); ts=[]
    for _ in range(n):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return np.median(ts)
def peak(dtype):
    a = np.ones((2048,2048), dtype); return max(2*2048**3/best(lambda: a@a, 3) for _ in range(2))/1e9
shapes = [tuple(map(int, s.split(","))) for s in sys.argv[2:]]
dtype = np.dtype(sys.argv[1])
pk = peak(dtype); print("peak", round(pk), flush=True)
for (T,B,X,H) in shapes:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T,B,X)).astype(dtype); h0 = np.zeros((B,H),dtype); c0=h0.copy()
    W_x = (rng.standard_normal((X,4*H))*0.1).astype(dtype); W_h=(rng.standard_normal((H,4*H))*0.1).astype(dtype); b=np.zeros(4*H,dtype)
    flops = 2*T*B*(X+H)*4*H
    lengths = np.full(B, T, np.int64)
    hh = np.empty((T,B,H),dtype); hn=np.empty((B,H),dtype); cn=hn.copy()
    from nblstm import ops
    from nblstm._dispatch import backend_named
    res = {}
    for rows in [int(r) for r in os.environ.get("ROWS","24,48,96").split(",")]:
        pl = mk(P.tile_for_this_cpu(), dtype, rows)
        res[f"blocked{rows}"] = best(lambda: blocked_lstm.sequence_inference(pl, x, h0, c0, W_x, W_h, b, lengths, hh, hn, cn))
    cpu = backend_named("cpu")
    os.environ["NBLSTM_CPU_GEMM"] = P.tile_for_this_cpu()  # the per-step packed pass
    res["per-step"] = best(lambda: ops.sequence_inference(cpu, x, h0, c0, W_x, W_h, b))
    print((T,B,X,H), " ".join(f"{k}: {v*1e3:.1f}ms {flops/v/1e9/pk*100:.0f}%" for k,v in res.items()), flush=True)
