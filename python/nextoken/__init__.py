"""nextoken: auto-regressive transformer inference with a hand-written C++ core.

    import nextoken
    model = nextoken.load("smollm2")                # or a path to a .gguf file
    print(model.generate("In a small village", max_new_tokens=64))
"""
from ._core import Error, cpu_isa
from ._core import ops
from .hub import pull
from .model import Model, load

__version__ = "0.1.0"
__all__ = ["Error", "Model", "load", "pull", "ops", "cpu_isa", "__version__"]
