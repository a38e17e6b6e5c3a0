"""nextoken: auto-regressive transformer inference with a hand-written C++ core.

    import nextoken
    model = nextoken.load("smollm2")                # or a .gguf file, or a Hugging Face folder
    print(model.generate("In a small village", max_new_tokens=64))
"""
from ._core import Error, cpu_isa
from ._core import ops
from . import chat_template
from .hub import pull
from .model import Model, load
from .sampling import sampling_distribution

try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("nextoken")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["Error", "Model", "load", "pull", "ops", "cpu_isa", "sampling_distribution", "__version__"]
