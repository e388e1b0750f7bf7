"""Hand-written numba kernels: the practical limit for elementwise/reduction work.

Written as DESIGN.md's toolchain facts say they must be to vectorise: float32
constants everywhere, error_model="numpy", fastmath without nnan/ninf, a rational
tanh and a Cody-Waite exp instead of libm calls (PyPI's llvmlite has no SVML), and
several accumulators for max. Each call allocates its result, as every other system
returns a fresh array.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..workloads import LN_EPS, Inputs, Size, Workload
from . import Prepared

VERSION = numba.__version__
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
F = np.float32


def kernel(parallel: bool = False):
    return njit(error_model="numpy", fastmath=FASTMATH, parallel=parallel, cache=True)


# --- vectorisable float32 tanh and exp ----------------------------------------------------
# tanh: Eigen's/XLA's rational approximation, max error about 1e-6 on the clamped range.
TANH_CLAMP = F(7.90531110763549805)
TANH_P = [F(c) for c in (-2.76076847742355e-16, 2.00018790482477e-13,
                         -8.60467152213735e-11, 5.12229709037114e-08,
                         1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03)]
TANH_Q = [F(c) for c in (1.19825839466702e-06, 1.18534705686654e-04,
                         2.26843463243900e-03, 4.89352518554385e-03)]
P0, P1, P2, P3, P4, P5, P6 = TANH_P
Q0, Q1, Q2, Q3 = TANH_Q


@kernel()
def tanh32(x):
    x = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    x2 = x * x
    p = ((((((P0 * x2 + P1) * x2 + P2) * x2 + P3) * x2 + P4) * x2 + P5) * x2 + P6) * x
    q = ((Q0 * x2 + Q1) * x2 + Q2) * x2 + Q3
    return p / q


# exp: Cephes expf. Its own flags exclude `reassoc`, which would merge the two-part
# ln2 subtraction and lose the extra precision it exists for.
LOG2E, LN2_HI, LN2_LO = F(1.44269504088896341), F(0.693359375), F(-2.12194440e-4)
EXP_LO, EXP_HI = F(-87.0), F(88.0)
E0, E1, E2, E3, E4, E5 = (F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                         4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))


@njit(error_model="numpy", fastmath={"nsz", "arcp", "contract"}, cache=True)
def exp32(x):
    x = min(max(x, EXP_LO), EXP_HI)
    n = np.floor(x * LOG2E + F(0.5))
    r = x - n * LN2_HI - n * LN2_LO
    p = ((((E0 * r + E1) * r + E2) * r + E3) * r + E4) * r + E5
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    return (p * r * r + r + F(1.0)) * scale


@kernel()
def rowmax(v):
    """Max of a row with eight independent accumulators, so that it vectorises."""
    n = v.shape[0]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = F(-np.inf)
    i = 0
    while i + 8 <= n:
        m0, m1 = max(m0, v[i]), max(m1, v[i + 1])
        m2, m3 = max(m2, v[i + 2]), max(m3, v[i + 3])
        m4, m5 = max(m4, v[i + 4]), max(m5, v[i + 5])
        m6, m7 = max(m6, v[i + 6]), max(m7, v[i + 7])
        i += 8
    for j in range(i, n):
        m0 = max(m0, v[j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


# --- the kernels ----------------------------------------------------------------------
GELU_C, GELU_K, HALF, ONE = F(np.sqrt(2.0 / np.pi)), F(0.044715), F(0.5), F(1.0)
EPS = F(LN_EPS)


@kernel(parallel=True)
def gelu_kernel(x, out):
    for i in prange(x.shape[0]):
        v = x[i]
        out[i] = HALF * v * (ONE + tanh32(GELU_C * (v + GELU_K * (v * v * v))))


@kernel(parallel=True)
def softmax_kernel(x, out):
    rows, cols = x.shape
    for r in prange(rows):
        m = rowmax(x[r])
        total = F(0.0)
        for c in range(cols):
            e = exp32(x[r, c] - m)
            out[r, c] = e
            total += e
        inv = ONE / total
        for c in range(cols):
            out[r, c] *= inv


@kernel(parallel=True)
def layernorm_kernel(x, gamma, beta, out):
    rows, cols = x.shape
    for r in prange(rows):
        total = F(0.0)
        for c in range(cols):
            total += x[r, c]
        mean = total / F(cols)
        sq = F(0.0)
        for c in range(cols):
            d = x[r, c] - mean
            sq += d * d
        rstd = ONE / np.sqrt(sq / F(cols) + EPS)
        for c in range(cols):
            out[r, c] = (x[r, c] - mean) * rstd * gamma[c] + beta[c]


# --- adapters -------------------------------------------------------------------------

def _gelu(p: Inputs) -> dict[str, np.ndarray]:
    out = np.empty_like(p["x"])
    gelu_kernel(p["x"], out)
    return {"y": out}


def _softmax(p: Inputs) -> dict[str, np.ndarray]:
    out = np.empty_like(p["x"])
    softmax_kernel(p["x"], out)
    return {"y": out}


def _layernorm(p: Inputs) -> dict[str, np.ndarray]:
    out = np.empty_like(p["x"])
    layernorm_kernel(p["x"], p["gamma"], p["beta"], out)
    return {"y": out}


BUILDERS = {"gelu_chain": _gelu, "softmax_rows": _softmax, "layernorm": _layernorm}


def prepare(w: Workload, inputs: Inputs, size: Size, device: str) -> Prepared:
    run = BUILDERS[w.name]
    return Prepared(step=lambda: run(inputs), fetch=lambda out: dict(out))
