"""What a ratio was measured on: the CPU's SIMD level as numpy sees it at run time.

numpy's float64 ``exp`` and ``log`` are vectorised only with AVX-512, so the same code's ratio
to a peer differs between machines; every benchmark prints this line beside its ratios.
"""

from __future__ import annotations

import os

import numpy as np


def simd_level() -> str:
    """E.g. ``"AVX512F (numpy 2.1.3, 2 CPUs)"``: the widest SIMD extension numpy dispatches to."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as features
    order = ["AVX512_SPR", "AVX512_ICL", "AVX512_SKX", "AVX512F", "AVX2", "AVX", "SSE42",
             "ASIMD", "NEON", "VSX"]
    best = next((name for name in order if features.get(name)), "none")
    return f"{best} (numpy {np.__version__}, {os.cpu_count()} CPUs)"


def print_machine() -> None:
    print(f"CPU SIMD level: {simd_level()}; numpy's float64 exp/log are SIMD only with AVX-512")
