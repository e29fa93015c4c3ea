"""One BLAS thread, for the small dense solves and factorizations of this package.

On a machine whose cores are busy, OpenBLAS's threaded small solves slow down a hundredfold
(measured here: a 128 x 128 solve took 93 ms with 2 threads under load, 0.7 ms with one), and
``implicit`` asks for single-threaded BLAS since it parallelizes over users itself. The
controller is built on first use (it inspects the loaded libraries), never at import.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any

from threadpoolctl import ThreadpoolController


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_thread() -> AbstractContextManager[Any]:
    """Context manager limiting BLAS to one thread.

    Example::

        with one_thread():
            x = np.linalg.solve(a, b)
    """
    return _controller().limit(limits=1, user_api="blas")  # type: ignore[no-any-return]
