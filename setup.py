"""Build the Cython kernels in ``ext/`` into ``latentstore``.

OpenMP is used when the compiler accepts ``-fopenmp``; without it the kernels
still build and run on one thread. ``-ffp-contract=off`` keeps the compiler
from fusing multiply-adds, which would break bit-exactness against the numpy
reference.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def compiler_has_openmp() -> bool:
    if os.environ.get("LATENTSTORE_NO_OPENMP"):
        return False
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        result = subprocess.run(
            [cc, "-fopenmp", src, "-o", os.path.join(tmp, "t")],
            capture_output=True,
        )
        return result.returncode == 0


openmp = sys.platform != "win32" and compiler_has_openmp()
compile_args = ["-O3", "-ffp-contract=off", "-fno-fast-math"]
link_args = []
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if openmp:
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")

extensions = [
    Extension(
        "latentstore._kernels",
        ["ext/_kernels.pyx"],
        include_dirs=[np.get_include(), "ext"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    ),
)
