"""Repository-wide pytest setup (applies to every package's tests when run from the root).

One BLAS/OpenMP thread for tests: on the 2-core CI machines LAPACK routines (eigh, sqrtm) ran 30-60x slower with
2 threads than with 1, and one thread also makes float results independent of the machine's core count. Set
before numpy/torch are imported by any test module; a value already in the environment wins. Library code never
sets threads.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
