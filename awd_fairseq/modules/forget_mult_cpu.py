"""The forget-mult recurrence as a compiled CPU kernel, c_t = f_t * c_{t-1} + (1 - f_t) * z_t.

A few dozen lines of plain C (below), built at first use with the system C compiler into a cached
shared library and called through ctypes: no torch headers, so the build takes well under a
second (a torch C++ extension with ``load_inline`` took ~45 s). The kernels make one pass over
time per direction, with the running cell of a block of columns kept in cache, and split the
columns over ``torch.get_num_threads()`` OpenMP threads (the libgomp torch has loaded already).
Float32 and float64 only; ``forget_mult.forget_mult`` falls back to the pure-torch path when
there is no compiler, for other dtypes, or when ``AWD_FAIRSEQ_CPU_KERNEL=0`` is set.

The library is cached in ``$AWD_FAIRSEQ_CACHE`` (default ``$XDG_CACHE_HOME/awd_fairseq``, i.e.
``~/.cache/awd_fairseq``) under a name hashing the source, the compiler, its flags and the CPU
(it is built with ``-march=native``), so a changed kernel or another machine rebuilds it.

Exactness: ``f * prev + (1 - f) * z`` gives ``prev`` for f == 1 and ``z`` for f == 0 bit for bit
(also when the compiler fuses it into an FMA), and nothing divides or takes logarithms, so the
recurrence is as stable as the reference loop for f near 0 and 1. The backward is the reverse
recurrence written out in ``forget_mult.py``.
"""
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

# f, z and the incoming gradient may be strided over (t, b) (the chunks of the QRNN's gate
# projection); their hidden dimension, c0 and every output are contiguous.
_KERNELS = Template(r"""
/* one block of columns at one step; separate functions, so that `restrict` reaches the
   vectoriser (OpenMP's outlining of the parallel loops drops it) */
static void fwd_step_$suffix(i64 n, const $scalar *restrict f, const $scalar *restrict z,
                             const $scalar *restrict prev, $scalar *restrict c)
{
    for (i64 i = 0; i < n; i++) c[i] = f[i] * prev[i] + (1 - f[i]) * z[i];
}

static void bwd_step_$suffix(i64 n, const $scalar *restrict f, const $scalar *restrict z,
                             const $scalar *restrict g, const $scalar *restrict prev,
                             $scalar *restrict df, $scalar *restrict dz, $scalar *restrict dc)
{
    for (i64 i = 0; i < n; i++) {
        const $scalar d = dc[i] + g[i];  /* dc: the gradient reaching c_t from later steps */
        dz[i] = d * (1 - f[i]);
        df[i] = d * (prev[i] - z[i]);
        dc[i] = d * f[i];
    }
}

void forget_mult_fwd_$suffix(
    const $scalar *restrict f, const $scalar *restrict z, const $scalar *restrict c0,
    $scalar *restrict c, i64 T, i64 B, i64 H, i64 f_st, i64 f_sb, i64 z_st, i64 z_sb, int threads)
{
    const i64 row_blocks = (H + BLOCK - 1) / BLOCK;
    #pragma omp parallel num_threads(threads) if (threads > 1 && T * B * H >= PARALLEL_MIN)
    for (i64 t = 0; t < T; t++) {
        #pragma omp for schedule(static) nowait
        for (i64 k = 0; k < B * row_blocks; k++) {
            const i64 b = k / row_blocks, h0 = (k % row_blocks) * BLOCK;
            const i64 n = H - h0 < BLOCK ? H - h0 : BLOCK;
            const $scalar *ft = f + t * f_st + b * f_sb + h0, *zt = z + t * z_st + b * z_sb + h0;
            const $scalar *prev = t > 0 ? c + ((t - 1) * B + b) * H + h0 : c0 + b * H + h0;
            fwd_step_$suffix(n, ft, zt, prev, c + (t * B + b) * H + h0);
        }
    }
}

void forget_mult_bwd_$suffix(
    const $scalar *restrict f, const $scalar *restrict z, const $scalar *restrict c0,
    const $scalar *restrict c, const $scalar *restrict g,
    $scalar *restrict df, $scalar *restrict dz, $scalar *restrict dc0,
    i64 T, i64 B, i64 H, i64 f_st, i64 f_sb, i64 z_st, i64 z_sb, i64 g_st, i64 g_sb, int threads)
{
    const i64 row_blocks = (H + BLOCK - 1) / BLOCK;
    #pragma omp parallel num_threads(threads) if (threads > 1 && T * B * H >= PARALLEL_MIN)
    {
        #pragma omp for schedule(static) nowait
        for (i64 k = 0; k < B * row_blocks; k++) {
            const i64 b = k / row_blocks, h0 = (k % row_blocks) * BLOCK;
            const i64 n = H - h0 < BLOCK ? H - h0 : BLOCK;
            for (i64 i = 0; i < n; i++) dc0[b * H + h0 + i] = 0;
        }
        for (i64 t = T - 1; t >= 0; t--) {
            #pragma omp for schedule(static) nowait
            for (i64 k = 0; k < B * row_blocks; k++) {
                const i64 b = k / row_blocks, h0 = (k % row_blocks) * BLOCK;
                const i64 n = H - h0 < BLOCK ? H - h0 : BLOCK;
                const $scalar *ft = f + t * f_st + b * f_sb + h0, *zt = z + t * z_st + b * z_sb + h0;
                const $scalar *gt = g + t * g_st + b * g_sb + h0;
                const $scalar *prev = t > 0 ? c + ((t - 1) * B + b) * H + h0 : c0 + b * H + h0;
                const i64 out = (t * B + b) * H + h0;
                /* dc0 holds the running gradient, and dc_0 at the end */
                bwd_step_$suffix(n, ft, zt, gt, prev, df + out, dz + out, dc0 + b * H + h0);
            }
        }
    }
}
""")
_SOURCE = (
    "#include <stdint.h>\ntypedef int64_t i64;\n#define BLOCK 256\n#define PARALLEL_MIN 65536\n"
    + _KERNELS.substitute(suffix="f32", scalar="float")
    + _KERNELS.substitute(suffix="f64", scalar="double")
)
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
DTYPES = tuple(_SUFFIX)
# tried in order; the last ones serve compilers without -march=native or OpenMP (pragmas ignored)
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp"],
    ["-O3", "-fopenmp"],
    ["-O3", "-Wno-unknown-pragmas"],
)


def _cache_dir() -> Path:
    if os.environ.get("AWD_FAIRSEQ_CACHE"):
        return Path(os.environ["AWD_FAIRSEQ_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "awd_fairseq"


def _cpu_identity() -> str:
    try:  # the model and instruction-set flags: what -march=native compiles for
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def _build(compiler: str) -> Optional[Path]:
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for flags in _FLAG_SETS:
        key = hashlib.sha256("\0".join([_SOURCE, compiler, *flags, platform.machine(), _cpu_identity()]).encode())
        target = cache / f"forget_mult_{key.hexdigest()[:16]}.so"
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src, out = Path(tmp) / "forget_mult.c", Path(tmp) / "forget_mult.so"
            src.write_text(_SOURCE, encoding="utf-8")
            cmd = [compiler, *flags, "-shared", "-fPIC", "-o", str(out), str(src)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(out, target)  # atomic: concurrent builders leave one complete file
                logger.info("built the forget-mult CPU kernel: %s", target)
                return target
            logger.debug("%s failed:\n%s", " ".join(cmd), proc.stderr)
    return None


@lru_cache(maxsize=None)
def _library() -> Optional[ctypes.CDLL]:
    if os.environ.get("AWD_FAIRSEQ_CPU_KERNEL", "1") == "0":
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    try:
        path = _build(compiler) if compiler else None
        lib = ctypes.CDLL(str(path)) if path else None
    except (OSError, subprocess.SubprocessError) as e:
        logger.warning("could not build or load the forget-mult CPU kernel (%s)", e)
        lib = None
    if lib is None:
        logger.warning("no C compiler could build the forget-mult CPU kernel: using the slower pure-torch path")
        return None
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _SUFFIX.values():
        getattr(lib, f"forget_mult_fwd_{suffix}").argtypes = [p] * 4 + [i64] * 7 + [i32]
        getattr(lib, f"forget_mult_bwd_{suffix}").argtypes = [p] * 8 + [i64] * 9 + [i32]
    return lib


def cpu_kernel_available() -> bool:
    return _library() is not None


def _time_batch_strides(t: Tensor):
    return t.stride(0), t.stride(1)


def _unit_last_stride(t: Tensor) -> Tensor:
    return t if t.stride(2) == 1 else t.contiguous()


class ForgetMultCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, f: Tensor, z: Tensor, c0: Tensor) -> Tensor:
        # f, z: (T, B, H), any (t, b) strides; c0: (B, H)
        f, z, c0 = _unit_last_stride(f), _unit_last_stride(z), c0.contiguous()
        T, B, H = z.shape
        c = torch.empty((T, B, H), dtype=z.dtype, device=z.device)  # (T, B, H)
        kernel = getattr(_library(), f"forget_mult_fwd_{_SUFFIX[z.dtype]}")
        kernel(f.data_ptr(), z.data_ptr(), c0.data_ptr(), c.data_ptr(), T, B, H,
               *_time_batch_strides(f), *_time_batch_strides(z), torch.get_num_threads())
        ctx.save_for_backward(f, z, c0, c)
        return c

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_c: Tensor):
        f, z, c0, c = ctx.saved_tensors
        g = _unit_last_stride(grad_c)  # e.g. the zero-stride gradient of a .sum()
        T, B, H = z.shape
        df = torch.empty((T, B, H), dtype=f.dtype, device=f.device)
        dz = torch.empty((T, B, H), dtype=z.dtype, device=z.device)
        dc0 = torch.empty((B, H), dtype=c0.dtype, device=c0.device)
        kernel = getattr(_library(), f"forget_mult_bwd_{_SUFFIX[z.dtype]}")
        kernel(f.data_ptr(), z.data_ptr(), c0.data_ptr(), c.data_ptr(), g.data_ptr(),
               df.data_ptr(), dz.data_ptr(), dc0.data_ptr(), T, B, H,
               *_time_batch_strides(f), *_time_batch_strides(z), *_time_batch_strides(g), torch.get_num_threads())
        return df, dz, dc0 if ctx.needs_input_grad[2] else None


def forget_mult_cpu(f: Tensor, z: Tensor, c0: Optional[Tensor] = None) -> Tensor:
    """Forget-mult with the compiled kernel; f, z: (T, B, H) float32/float64 on the CPU, c0: (B, H)
    or None. Raises RuntimeError when the kernel could not be built (see cpu_kernel_available)."""
    if f.dim() != 3 or f.shape != z.shape or f.dtype != z.dtype or f.dtype not in _SUFFIX:
        raise ValueError(f"expected f, z of one (T, B, H) shape and dtype float32/64, got {f.shape} {f.dtype}, {z.shape} {z.dtype}")
    if f.device.type != "cpu" or z.device.type != "cpu":
        raise ValueError("forget_mult_cpu takes CPU tensors")
    if c0 is not None and (c0.shape != z.shape[1:] or c0.dtype != z.dtype):
        raise ValueError(f"expected c0 of shape {tuple(z.shape[1:])} and dtype {z.dtype}, got {tuple(c0.shape)} {c0.dtype}")
    if not cpu_kernel_available():
        raise RuntimeError("the forget-mult CPU kernel is not available (no C compiler, or AWD_FAIRSEQ_CPU_KERNEL=0)")
    if c0 is None:
        c0 = z.new_zeros(z.shape[1:])
    return ForgetMultCPU.apply(f, z, c0)
