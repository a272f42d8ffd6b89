"""Process-wide thread limits of the native libraries the services call from Python.

numpy's BLAS (OpenBLAS in the PyPI wheels) starts one thread per core and lets them spin for a
while after each call. The services make many small numpy calls (Whisper log-mel features for STT
and for Smart Turn, in their own thread pools), so those spinning threads burn CPU for no work:
on the 2-core build box a Smart Turn check cost 77 ms of CPU with OpenBLAS's 2 threads and 43 ms
with 1 (docs/benchmarks.md), and the cost grows with the host's core count.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS at ``threads`` threads for the whole process (every thread, from now on).

    Uses threadpoolctl (joblib's maintained library, which finds OpenBLAS/MKL/BLIS however numpy
    was built) rather than ``OPENBLAS_NUM_THREADS``, which only works if set before numpy loads.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    log.debug("BLAS threads: %s", [(i["internal_api"], i["num_threads"]) for i in threadpool_info()])
