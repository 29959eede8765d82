"""numba twins of minibert's hot kernels: same signatures, same caches, same results as the NumPy
references in ``minibert/layers`` (file for file: ``kernels/ffn.py`` twins ``layers/ffn.py``), which stay the source of
truth that students read.  ``minibert.set_backend("numba")`` swaps these in through ``OPS``.

Every jitted function uses ``cache=True``: it is compiled on first use (a few seconds each) and the
machine code is kept in ``__pycache__`` (or ``$NUMBA_CACHE_DIR``) for later runs.  numba is a core
dependency (``install_requires``), and the numba backend is the default.
"""
import os

import numba

# Every parallel kernel, and every slab of a product (``_blas.py``), runs on numba's pool of threads.
# OpenMP's threads spin a little after each kernel before they sleep, so the next kernel starts in a
# few microseconds; numba's own "workqueue" pool wakes a sleeping thread each time (~140 us per kernel
# on the AMD VM of docs/performance.md, where a BERT-Tiny step starts 92 kernels and 48 cut products).
# Where numba has no OpenMP (no libgomp, macOS), it takes TBB if installed, else its workqueue.
if not os.environ.get("NUMBA_THREADING_LAYER") and not os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _keep_freed_memory():
    """Let glibc keep the memory a training step frees, for the next step.

    A step frees and makes again the same large arrays (the 641 x 8192 MLM probabilities, the attention
    scores, the FFN activations).  By default glibc hands the top of its heap back to the kernel once
    a threshold's worth of it is free (128 KiB at first, twice the largest array freed since), and
    arrays above another threshold get their own mapping, unmapped when freed; the next step then
    faults those pages in again, each zeroed by the kernel.  On the AMD machine of docs/performance.md
    a cross-entropy whose output was such fresh memory took 25-50 ms instead of 5, and a BERT-Tiny
    step spent 27 ms in the kernel (12.8 ms with this).  Here arrays up to 32 MiB
    come from the heap, and up to 1 GiB of free heap is kept.  The process's peak memory is unchanged;
    it is just not returned between steps.  Setting glibc's own ``MALLOC_TRIM_THRESHOLD_`` or
    ``MALLOC_MMAP_THRESHOLD_`` leaves glibc as configured there.
    """
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    import ctypes
    import platform
    if platform.libc_ver()[0] != "glibc":
        return
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1 << 30)


_keep_freed_memory()

FORKED_MESSAGE = ("this process was forked after numba's OpenMP threads ran in its parent, and OpenMP cannot run "
                  "in such a child: it runs the NumPy references (set_backend('numpy')).  To run the numba "
                  "kernels in worker processes, start them with multiprocessing's 'spawn' method.")


def after_fork_in_child():
    """Called in a child process just after ``fork`` (``minibert.backend`` registers the hook): True when
    the parent had started numba's OpenMP threads, so the kernels cannot run here.

    GNU OpenMP cannot run in a process forked after its threads started: numba terminates such a child
    at its first parallel kernel ("fork() called from a process already using GNU OpenMP, this is
    unsafe").  The products of ``_blas.py`` then go to NumPy too."""
    from numba.np.ufunc import parallel  # numba's own record of its started threads (private names)
    if not (getattr(parallel, "_is_initialized", False) and getattr(parallel, "_threading_layer", None) == "omp"):
        return False
    _blas.forked_from_openmp = True
    return True

from .adamw import adamw_update  # noqa: E402  (after the threading layer is chosen)
from .attention import (attention_backward, attention_forward, attention_softmax_backward,  # noqa: E402
                        attention_softmax_forward)
from .cross_entropy import cross_entropy_backward, cross_entropy_forward  # noqa: E402
from .dropout import dropout_backward, dropout_forward  # noqa: E402
from .embedding import embedding_backward  # noqa: E402
from .ffn import ffn_backward, ffn_forward  # noqa: E402
from .gelu import bias_gelu_forward, gelu_backward, gelu_bias_backward, gelu_forward  # noqa: E402
from .layernorm import layernorm_backward, layernorm_forward  # noqa: E402
from .linear import linear_backward, linear_forward  # noqa: E402
from . import _blas  # noqa: E402

# reference function name -> twin; the backend overrides exactly these names in ``backend.ops``
OPS = {
    "layernorm_forward": layernorm_forward,
    "layernorm_backward": layernorm_backward,
    "attention_forward": attention_forward,
    "attention_backward": attention_backward,
    "ffn_forward": ffn_forward,
    "ffn_backward": ffn_backward,
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "dropout_forward": dropout_forward,
    "dropout_backward": dropout_backward,
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
    "embedding_backward": embedding_backward,
    "linear_forward": linear_forward,
    "linear_backward": linear_backward,
    "adamw_update": adamw_update,
}
