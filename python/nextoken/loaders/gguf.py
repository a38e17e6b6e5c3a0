"""GGUF files, read by the core (csrc/loaders/gguf.cpp, gguf_models.cpp): the container parsed and its
tensors left in a read-only memory map, the architecture's keys and tensor names mapped onto the one
transformer there, so that this package and the C API (include/nextoken/nextoken.h) load a file the same
way. Here: the metadata as Python values, the Spec and the file's tokenizer (csrc/tokenizer). Everything a user can get
wrong in a file is reported as nextoken.Error."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import _core
from ..architectures import Spec


@dataclass
class GGUFFile:
    path: Path
    metadata: dict   # every key/value (numeric arrays as numpy arrays, other arrays as lists)
    spec: Spec       # config and weights by role (numpy views of the file mapping)
    identity: str    # path, size, mtime and header hash: what a cache made from the file is checked against
    tokenizer: object  # _core.CoreTokenizer: the file's vocabulary (tokenizer.GGUFTokenizer wraps it)


def read(path) -> GGUFFile:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    f = _core.read_gguf(str(path))
    spec = Spec(f["architecture"], f["config"], f["tensors"], f["context_length"])
    return GGUFFile(path, f["metadata"], spec, f["identity"], f["tokenizer"])
