"""Build the Cython kernels in ``ext/`` into ``latentstore``.

OpenMP is used when the compiler accepts ``-fopenmp``; without it the kernels
still build and run on one thread. ``-ffp-contract=off`` keeps the compiler
from fusing multiply-adds, which would break bit-exactness against the numpy
reference. On x86-64 the same kernels are built a second time with
``-mavx2`` (``latentstore.quantization._kernels_avx2``), used at run time when the CPU has
AVX2: the loops are memory- and latency-bound, but twice-wider vectors still
gain 10-15% on a single thread.
"""

import os
import platform
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def compiler_accepts(flag: str, source: str) -> bool:
    """Whether the C compiler builds ``source`` with ``flag``."""
    cc = os.environ.get("CC", "cc")
    if sys.platform == "win32" or shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write(source)
        result = subprocess.run([cc, flag, src, "-o", os.path.join(tmp, "t")], capture_output=True)
        return result.returncode == 0


openmp = not os.environ.get("LATENTSTORE_NO_OPENMP") and compiler_accepts(
    "-fopenmp", "#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n"
)
avx2 = (
    platform.machine().lower() in ("x86_64", "amd64")
    and not os.environ.get("LATENTSTORE_NO_AVX2")
    and compiler_accepts("-mavx2", "#include <immintrin.h>\nint main(void){__m256i v = _mm256_set1_epi32(1); return _mm256_extract_epi32(v, 0) != 1;}\n")
)
compile_args = ["-O3", "-ffp-contract=off", "-fno-fast-math"]
link_args = []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

variants = {"_kernels": []}
if avx2:
    variants["_kernels_avx2"] = ["-mavx2"]
extensions = [
    Extension(
        f"latentstore.quantization.{name}",
        [f"ext/{name}.pyx"],
        include_dirs=[np.get_include(), "ext"],
        extra_compile_args=compile_args + flags,
        extra_link_args=link_args,
        define_macros=macros,
        depends=["ext/_kernels.pxi", "ext/_half.pxd"],
    )
    for name, flags in variants.items()
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    ),
)
