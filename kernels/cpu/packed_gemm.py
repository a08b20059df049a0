"""A packed-weight GEMM for the CPU: one register-blocked micro-kernel, written in LLVM vector IR.

Why our own GEMM: the LSTM's recurrent product ``h_{t-1} @ W_h`` is a small GEMM repeated T
times with the same ``W_h``. BLAS re-packs ``W_h`` on every call and its threads spin between
calls; here the weights are packed once per call into column panels and one micro-kernel is
run from numba code, in the same parallel region as the gate math that consumes its output.

Terms (all sizes in elements):

- ``U``  = vector width: ``vector_bytes // itemsize`` (AVX-512: 16 float32 / 8 float64).
- ``NR`` = ``4 * U`` columns per panel: one tile row is four vectors.
- ``MR`` = rows of ``A`` per tile (4 on AVX-512: 4 x 4 = 16 accumulator registers of 32).
- a *panel* of a ``(K, N)`` matrix is ``K x NR``, row-major, stored as ``packed[p, k, c]`` in a
  C-contiguous ``(P, K, NR)`` array, ``P = ceil(N / NR)``; columns past ``N`` are zero.
- *gate panels* of a fused LSTM weight ``W (K, 4H)`` (gate blocks i, f, g, o along the
  columns) hold ``U`` hidden units: ``packed[p, k, v*U + u] = W[k, v*H + p*U + u]`` for gate
  ``v`` in (i, f, g, o). One tile then yields the four gate pre-activations of ``U`` units,
  so the thread that computes it can apply the gate math at once.

Tiles (``TILES``) are (``MR``, vector bytes). They are chosen from the CPU's features but every
tile is correct on every CPU: LLVM lowers vector IR wider than the machine into several
registers (slower, same results), which is how the parity suite tests every variant anywhere.
FMAs are ``llvm.fmuladd``: fused where the CPU has FMA, a multiply and an add elsewhere.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..config import JIT_OPTIONS, TILES

TILE_IDS = {name: index for index, name in enumerate(TILES)}


def vector_width(tile: str, itemsize: int) -> int:
    """``U``: elements per vector of ``tile`` for a dtype of ``itemsize`` bytes."""
    return TILES[tile][1] // itemsize


def _data_pointer(context, builder, array_type, value):
    return context.make_array(array_type)(context, builder, value).data


@intrinsic(prefer_literal=True)
def _tile_fma(typingctx, a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs,
              accumulate, mr, vector_bytes):
    """``C[r, 0:NR] (+)= sum_k A[r, k] * Bpanel[k, 0:NR]`` for ``r < rows <= MR``.

    ``A[r, k]`` is ``a.data[a_off + r*a_rs + k*a_ks]`` (any strides: a transposed operand
    costs nothing); ``Bpanel[k, c]`` is ``bp.data[b_off + k*NR + c]``; ``C[r, v*U + u]`` is
    ``c.data[c_off + r*ldc + v*gs + u]`` for the tile's four vectors ``v``: ``gs = U`` for a
    plain row of NR columns, ``gs = H`` (padded) to scatter a gate panel's four gates back
    into gate blocks. All NR columns are written (callers route edge panels through a
    scratch tile). Rows ``r >= rows`` read row ``rows - 1`` (valid memory) and are
    not stored. ``accumulate`` (bool/int at run time) adds the existing ``C``.
    ``mr`` and ``vector_bytes`` are compile-time literals: the tile shape.
    Arrays must share one float dtype; no bounds checks (the callers own the shapes).
    """
    if not (isinstance(mr, types.IntegerLiteral) and isinstance(vector_bytes, types.IntegerLiteral)):
        return None
    arrays = (a, bp, c)
    if not all(isinstance(t, types.Array) and t.dtype in (types.float32, types.float64)
               for t in arrays) or len({t.dtype for t in arrays}) != 1:
        return None
    dtype = a.dtype
    MR = mr.literal_value
    U = vector_bytes.literal_value // (4 if dtype == types.float32 else 8)
    NR = 4 * U
    signature = types.void(a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs,
                           accumulate, mr, vector_bytes)

    def codegen(context, builder, sig, args):
        (a_v, a_off_v, a_rs_v, a_ks_v, rows_v, bp_v, b_off_v, k_len_v, c_v, c_off_v, ldc_v,
         gs_v, acc_v, _, _) = args
        i64 = ir.IntType(64)

        def as_i64(value, value_type):
            return context.cast(builder, value, value_type, types.int64)

        integer_args = (1, 2, 3, 4, 6, 7, 9, 10, 11)
        a_off_v, a_rs_v, a_ks_v, rows_v, b_off_v, k_len_v, c_off_v, ldc_v, gs_v = (
            as_i64(args[i], sig.args[i]) for i in integer_args)
        accumulate_v = context.cast(builder, acc_v, sig.args[12], types.boolean)
        element = context.get_value_type(dtype)
        vector = ir.VectorType(element, U)
        vector_ptr = vector.as_pointer()
        align = 4 if dtype == types.float32 else 8
        suffix = f"v{U}f{32 if dtype == types.float32 else 64}"
        fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector, vector, vector]),
            f"llvm.fmuladd.{suffix}")
        a_ptr = _data_pointer(context, builder, sig.args[0], a_v)
        b_ptr = builder.gep(_data_pointer(context, builder, sig.args[5], bp_v), [b_off_v])
        c_ptr = _data_pointer(context, builder, sig.args[8], c_v)

        # One pointer per tile row; rows past `rows` alias the last valid row (never stored).
        last_row = builder.sub(rows_v, ir.Constant(i64, 1))
        row_ptrs = []
        for r in range(MR):
            r_const = ir.Constant(i64, r)
            row = builder.select(builder.icmp_signed("<", r_const, rows_v), r_const, last_row)
            row_ptrs.append(builder.gep(a_ptr, [builder.add(a_off_v, builder.mul(row, a_rs_v))]))

        # Accumulators live in stack slots that LLVM's SROA promotes to vector registers.
        zero = ir.Constant(vector, None)
        accumulators = [[cgutils.alloca_once_value(builder, zero) for _ in range(4)]
                        for _ in range(MR)]
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), U), None)
        with cgutils.for_range(builder, k_len_v) as loop:
            k = loop.index
            b_row = builder.gep(b_ptr, [builder.mul(k, ir.Constant(i64, NR))])
            b_vectors = [builder.load(builder.bitcast(builder.gep(b_row, [ir.Constant(i64, v * U)]),
                                                      vector_ptr), align=align)
                         for v in range(4)]
            k_offset = builder.mul(k, a_ks_v)
            for r in range(MR):
                scalar = builder.load(builder.gep(row_ptrs[r], [k_offset]))
                lane = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar,
                                              ir.Constant(ir.IntType(32), 0))
                splat = builder.shuffle_vector(lane, ir.Constant(vector, ir.Undefined), splat_mask)
                for v in range(4):
                    slot = accumulators[r][v]
                    builder.store(builder.call(fmuladd, [splat, b_vectors[v], builder.load(slot)]),
                                  slot)

        for r in range(MR):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(i64, r), rows_v)):
                row_start = builder.add(c_off_v, builder.mul(ir.Constant(i64, r), ldc_v))
                for v in range(4):
                    column = builder.mul(ir.Constant(i64, v), gs_v)
                    target = builder.bitcast(
                        builder.gep(c_ptr, [builder.add(row_start, column)]), vector_ptr)
                    value = builder.load(accumulators[r][v])
                    with builder.if_then(accumulate_v):
                        builder.store(builder.fadd(value, builder.load(target, align=align)),
                                      accumulators[r][v])
                    builder.store(builder.load(accumulators[r][v]), target, align=align)
        return context.get_dummy_value()

    return signature, codegen


# The tiles' shapes as module constants (numba freezes globals: compile-time literals for
# ``_tile_fma``), in the order of TILES, so config.TILES is the only place they are set.
(_MR_0, _VB_0), (_MR_1, _VB_1), (_MR_2, _VB_2) = TILES.values()


@njit(**JIT_OPTIONS)
def tile_product(tile, a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs,
                 accumulate):
    """Run the micro-kernel of tile id ``tile`` (see ``TILES``; arguments as ``_tile_fma``).

    The branches give each tile shape its compile-time literals; only one runs.
    """
    if tile == 0:
        _tile_fma(a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs, accumulate,
                  _MR_0, _VB_0)
    elif tile == 1:
        _tile_fma(a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs, accumulate,
                  _MR_1, _VB_1)
    else:
        _tile_fma(a, a_off, a_rs, a_ks, rows, bp, b_off, k_len, c, c_off, ldc, gs, accumulate,
                  _MR_2, _VB_2)


# ---------------------------------------------------------------------------------- packing

@njit(**JIT_OPTIONS)
def pack_gate_panels(W, U, out):
    """Gate panels of a fused weight: ``out[p, k, v*U + u] = W[k, v*H + p*U + u]`` (0 past H).

    W (K, 4H), gate blocks (i, f, g, o) along the columns; out (ceil(H/U), K, 4U).
    """
    K = W.shape[0]
    H = W.shape[1] // 4
    for p in range(out.shape[0]):
        units = min(U, H - p * U)
        for k in range(K):
            src, dst = W[k], out[p, k]
            for v in range(4):
                base = v * H + p * U
                for u in range(units):
                    dst[v * U + u] = src[base + u]
                for u in range(units, U):
                    dst[v * U + u] = 0


@njit(**JIT_OPTIONS)
def pack_panels(W, transpose, row_start, out):
    """Plain column panels of ``M = W`` (or ``W.T`` if ``transpose``), written from row
    ``row_start`` of the packed matrix on: ``out[p, row_start + k, c] = M[k, p*NR + c]``
    (0 past the last column). out (ceil(N/NR), K_total, NR). Lets a matrix be packed from
    several row blocks (the backward pass's ``[h0; h_1..h_{T-1}]``).
    """
    NR = out.shape[2]
    K = W.shape[1] if transpose else W.shape[0]
    N = W.shape[0] if transpose else W.shape[1]
    for p in range(out.shape[0]):
        cols = min(NR, N - p * NR)
        for k in range(K):
            dst = out[p, row_start + k]
            if transpose:
                for col in range(cols):
                    dst[col] = W[p * NR + col, k]
            else:
                src = W[k]
                for col in range(cols):
                    dst[col] = src[p * NR + col]
            for col in range(cols, NR):
                dst[col] = 0


# ------------------------------------------------------------------------------ GEMM drivers

@njit(**JIT_OPTIONS)
def panel_product(tile, MR, a, a_off, a_rs, a_ks, M, K, bp, p, kc, c, c_off, ldc, gs, cols,
                  gated, edge_tile, accumulate):
    """``C (+)= A[0:M, 0:K] @ panel p of bp``, K-blocked by ``kc``.

    A as in ``_tile_fma`` (element offset, row and k strides); bp (P, K, NR) packed panels;
    C at element offset ``c_off``, row stride ``ldc``, the tile's vector ``v`` at column
    offset ``v*gs`` (``_tile_fma``). Valid columns: the first ``cols`` of the panel for a
    plain panel; the first ``cols`` units of every gate vector if ``gated``. A panel with
    invalid columns (the last one of a matrix) is computed over the whole K into
    ``edge_tile`` (MR, NR) and its valid columns added/copied to C: the micro-kernel always
    writes whole vectors, which would run past the end of a row or a gate block.
    K-blocking: for each ``kc`` slice of the panel (kept in cache), every row block of A
    runs against it, accumulating into C after the first slice.
    """
    NR = bp.shape[2]
    U = NR // 4
    b_base = p * bp.shape[1] * NR
    if cols == (U if gated else NR):
        for k0 in range(0, K, kc):
            k_len = min(kc, K - k0)
            add = accumulate or k0 > 0
            for i0 in range(0, M, MR):
                rows = min(MR, M - i0)
                tile_product(tile, a, a_off + i0 * a_rs + k0 * a_ks, a_rs, a_ks, rows,
                             bp, b_base + k0 * NR, k_len, c, c_off + i0 * ldc, ldc, gs, add)
    else:
        flat_c = c.reshape(c.size)
        for i0 in range(0, M, MR):
            rows = min(MR, M - i0)
            tile_product(tile, a, a_off + i0 * a_rs, a_rs, a_ks, rows, bp, b_base, K,
                         edge_tile, 0, NR, U, False)
            for r in range(rows):
                for v in range(4):
                    n = cols if gated else min(U, max(0, cols - v * U))
                    out = c_off + (i0 + r) * ldc + v * gs
                    for u in range(n):
                        if accumulate:
                            flat_c[out + u] += edge_tile[r, v * U + u]
                        else:
                            flat_c[out + u] = edge_tile[r, v * U + u]
