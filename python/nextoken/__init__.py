"""nextoken: auto-regressive transformer inference with a hand-written C++ core.

    import nextoken
    model = nextoken.load("smollm2")                # or a .gguf file, or a Hugging Face folder
    print(model.generate("In a small village", max_new_tokens=64))
"""
import os as _os

# OpenMP threads that spin at a barrier while the OS has given their core to another process stall every
# other thread: with libgomp's default spin (300,000 iterations) decoding on a busy 2-core machine fell to
# ~1 token/s, against ~50 on one thread. Spinning ~10,000 iterations, then sleeping, keeps the idle speed
# and degrades to one thread's speed under load (benchmarks/bench_busy.py). libgomp reads this when it
# starts, i.e. when _core loads it, unless the user chose a wait policy or another library loaded it first.
if "OMP_WAIT_POLICY" not in _os.environ and "GOMP_SPINCOUNT" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "10000"

from ._core import Error, cpu_isa  # noqa: E402
from ._core import ops  # noqa: E402
from . import chat_template  # noqa: E402
from .hub import pull  # noqa: E402
from .model import Model, load  # noqa: E402
from .sampling import sampling_distribution  # noqa: E402

try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("nextoken")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["Error", "Model", "load", "pull", "ops", "cpu_isa", "sampling_distribution", "__version__"]
