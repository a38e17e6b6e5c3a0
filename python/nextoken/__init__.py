"""nextoken: auto-regressive transformer inference with a hand-written C++ core.

    import nextoken
    model = nextoken.load("smollm2")                # or a .gguf file, or a Hugging Face folder
    print(model.generate("In a small village", max_new_tokens=64))
"""
from pathlib import Path

from ._core import Error, cpu_isa, cuda_devices
from ._core import ops
from . import chat_template
from .hub import pull
from .model import Model, load
from .sampling import sampling_distribution



def get_include() -> str:
    """The folder that holds nextoken/nextoken.h, the C API's header (cc -I...)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "include", here.parent.parent / "include"):  # installed; a source tree
        if (folder / "nextoken" / "nextoken.h").is_file():
            return str(folder)
    raise Error(f"nextoken.h is not installed beside {here}")


def get_library() -> str:
    """The path of libnextoken.so, the shared library behind the C API (and this module)."""
    return str(Path(__file__).resolve().parent / "libnextoken.so")


try:
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("nextoken")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["Error", "Model", "load", "pull", "ops", "cpu_isa", "cuda_devices", "sampling_distribution", "get_include",
           "get_library", "__version__"]
