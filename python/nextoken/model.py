"""The Model users hold: load weights, tokenize, and generate (text in, text out; ids in, ids out)."""
from __future__ import annotations

import collections
import hashlib
import os
import secrets
import warnings
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence, Union

import numpy as np

from . import _core, architectures, chat_template, hub
from . import lora as lora_adapters
from ._core import Error
from .arrays import as_array, float_array as _float_array, id_array
from .loaders import gguf, safetensors
from .sampling import checked_params
from .tokenizer import GGUFTokenizer, StreamDecoder, Tokenizer

Prompt = Union[str, Sequence[int], np.ndarray]
MAX_LOGPROBS = 20  # alternatives per token, as the OpenAI API allows


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load(model: Union[str, os.PathLike] = hub.DEFAULT_MODEL, n_ctx: int = 2048, n_threads: int | None = None,
         compute_type: str = "float32", weights: str | None = None,
         lora: Union[str, os.PathLike, None] = None, kv_cache: str = "f32",
         packed_cache: Union[bool, str, os.PathLike, None] = None, device: str = "cpu") -> "Model":
    """Load a model by name (see nextoken.hub.MODELS; fetched on first use), from a .gguf file or from a
    Hugging Face folder (config.json, *.safetensors, tokenizer.json).

    n_ctx: the most tokens (prompt + generated) one sequence can hold; the KV cache is sized for it.
    n_threads: CPU threads for the kernels; default: every core this process may run on.
    compute_type: "float32" (default): fp32 activations, weights dequantized on the fly; matches the
      fp32 reference to rounding. "int8": activations quantized to int8 per 32 values and integer dot
      products against weights repacked at load (Q4_0/Q4_1/Q5_0/Q8_0 matrices), as llama.cpp computes:
      faster, and the logits move by the quantization error (normalised MSE ~1e-3 to 1e-2 on SmolLM2).
    weights: None (default): matrices as stored. "q8_0", "q4_0" or "q4_k": F32 / F16 / BF16 weight matrices
      quantized once at load with llama.cpp's reference rounding (a matrix whose rows are not whole Q4_K
      blocks of 256 gets Q8_0), so that compute_type="int8" and less memory apply to float checkpoints.
    lora: a PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) merged into a Hugging
      Face folder's weights at load, before any quantization.
    kv_cache: how keys and values are kept: "f32" (default, exact), "f16" (llama.cpp's default) or "bf16":
      half the memory, and half the bytes each decode step reads from the cache; "q8_0": int8 per 32 values
      with an f16 scale, about a quarter (head dims a multiple of 32). Logits move slightly (README: the
      measured error).
    packed_cache: int8 compute of a GGUF file keeps its repacked weights in a file and reads them on the next
      load instead of repacking (checked against the model file's path, size, mtime and header hash). None
      (default): for the models in nextoken's cache folder (nextoken pull), beside them in packed/; True:
      for any file, there; a path: that file; False: never.
    device: "cpu" (default), or "cuda": the weights are copied to the GPU once and the KV caches and activations
      live there (float32 compute; an f32, f16 or bf16 cache). nextoken.cuda_devices() lists the GPUs this
      build can use.
    """
    return Model(hub.resolve(model), n_ctx=n_ctx, n_threads=n_threads, compute_type=compute_type, weights=weights,
                 lora=lora, kv_cache=kv_cache, packed_cache=packed_cache, device=device)


def _check_int(name, value, low, high=2**31 - 1):
    """value as an int in [low, high] (the C++ core takes 32-bit ints), else a nextoken.Error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise Error(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


class Model:
    """A loaded model: its weights, tokenizer and one sequence's KV cache. Made by nextoken.load()."""

    def __init__(self, path, n_ctx: int = 2048, n_threads: int | None = None, compute_type: str = "float32",
                 weights: str | None = None, lora=None, kv_cache: str = "f32", packed_cache=None, device: str = "cpu"):
        n_ctx = _check_int("n_ctx", n_ctx, 1)
        n_threads = default_threads() if n_threads is None else _check_int("n_threads", n_threads, 1)
        if not isinstance(compute_type, str) or compute_type not in ("float32", "int8"):  # before it is compared
            raise Error(f"compute_type must be 'float32' or 'int8', got {compute_type!r}")
        if not isinstance(device, str) or device not in ("cpu", "cuda"):
            raise Error(f"device must be 'cpu' or 'cuda', got {device!r}")
        path = Path(path)
        packed = {}  # int8: where the repacked weights are kept (_packed_cache_path)
        if safetensors.is_folder(path):
            folder = safetensors.read(path)
            if lora is not None:
                lora_adapters.merge(folder, lora)
            spec = architectures.from_hf(folder, n_ctx)
            self.tokenizer = Tokenizer.from_folder(path, folder.config, folder.generation_config)
            file_mapped = False  # some weights are converted copies in RAM, never to be released
        else:
            if lora is not None:
                raise Error("lora= merges an adapter into a Hugging Face folder's weights; a GGUF file cannot take one")
            f = gguf.read(path)
            spec = f.spec
            self.tokenizer = GGUFTokenizer(f.tokenizer)
            file_mapped = True   # every matrix views the read-only mapping: int8 may drop its pages
            if compute_type == "int8" and weights is None:
                cache = _packed_cache_path(path, packed_cache)
                if cache is not None:
                    packed = dict(packed_cache=str(cache), packed_cache_key=f.identity)
        if weights is not None:
            spec = architectures.quantize_roles(spec, weights, _core.ops.quantize, n_threads)
            file_mapped = False  # the quantized matrices are in RAM
        if not isinstance(kv_cache, str) or kv_cache not in ("f32", "f16", "bf16", "q8_0"):
            raise Error(f"kv_cache must be 'f32', 'f16', 'bf16' or 'q8_0', got {kv_cache!r}")
        self.kv_cache = kv_cache
        self.architecture = spec.architecture
        self.config = dict(spec.config, kv_cache=kv_cache, device=device)
        self.device = device
        if self.tokenizer.vocab_size > self.config["vocab_size"]:
            raise Error(f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model only "
                        f"{self.config['vocab_size']}")
        self.compute_type = compute_type
        self.path = path
        self._warned_raw_prompt = False
        self.context_length = spec.context_length
        if isinstance(spec.context_length, bool) or not isinstance(spec.context_length, (int, np.integer)) or \
                spec.context_length < 0:  # a folder's max_position_embeddings / n_positions, as config.json says
            raise Error(f"{path.name}: the context length it was trained for must be an integer >= 0, got "
                        f"{spec.context_length!r}")
        if spec.context_length and n_ctx > spec.context_length:
            warnings.warn(f"n_ctx = {n_ctx} exceeds the {spec.context_length} positions {path.name} was trained for: "
                          "quality degrades past them", stacklevel=3)
        self.n_parameters = sum(rows * cols for _, _, rows, cols, _ in spec.tensors)
        names = {number: info[0] for number, info in _core.weight_types().items()}
        types = collections.Counter(names[type_id] for role, type_id, *_ in spec.tensors
                                    if architectures.is_matrix_role(role))
        self.weight_types = dict(types.most_common())
        try:
            self._transformer = _core.Transformer(self.config, spec.tensors, n_ctx, compute_type, file_mapped,
                                                  n_threads, **packed)
        except Error as e:  # the core names the weight by its role; say which file it came from
            raise Error(f"{path.name}: {e}") from None
        self._model = _core.Session(self._transformer, n_ctx, n_threads)
        # Encoder-decoder models: the encoder is a second transformer; the Session above is the decoder's.
        self._encoder = None
        self.generation = dict(spec.generation)
        for key in ("decoder_start_token_id", "forced_bos_token_id"):  # as the folder's configs set them
            if self.generation.get(key) is not None:
                _check_int(f"{path.name}: {key}", self.generation[key], 0, self.config["vocab_size"] - 1)
        self.vision = dict(spec.vision)
        if spec.encoder is not None:
            self._encoder = _core.Transformer(dict(spec.encoder.config, kv_cache=kv_cache, device=device), spec.encoder.tensors, n_ctx, compute_type,
                                              file_mapped, n_threads)
            self.n_parameters += sum(rows * cols for _, _, rows, cols, _ in spec.encoder.tensors)

    def __repr__(self) -> str:
        types = ", ".join(f"{name} x{count}" for name, count in self.weight_types.items())
        return (f"<nextoken.Model {self.architecture} from {self.path.name}: {self.n_parameters / 1e6:.1f}M parameters "
                f"({types}), n_ctx={self.n_ctx}, n_threads={self.n_threads}, compute_type={self.compute_type!r}>")

    # ---- sizes and settings ------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """The most tokens (prompt + generated) one sequence can hold."""
        return self._model.n_ctx

    @property
    def n_threads(self) -> int:
        """CPU threads the kernels use; may be changed between calls."""
        return self._model.n_threads

    @n_threads.setter
    def n_threads(self, n: int):
        self._model.n_threads = _check_int("n_threads", n, 1)

    @property
    def vocab_size(self) -> int:
        """Rows of the logits (the model's vocabulary, which may exceed the tokenizer's)."""
        return self.config["vocab_size"]

    @property
    def eos_token_ids(self) -> list[int]:
        """The ids that end a generation."""
        return list(self.tokenizer.eos_ids)

    # ---- text <-> ids --------------------------------------------------------------------------------
    def tokenize(self, text: str, parse_special: bool = True, add_bos: bool = True) -> list[int]:
        """Token ids of `text`.

        parse_special: text spelling a special token (e.g. "<|im_end|>") becomes that token's id, as Hugging
        Face tokenizers do by default, so hand-written chat prompts work. Pass False for untrusted text:
        special tokens are then read as the plain text they look like (llama.cpp's parse_special=False).
        add_bos: the BOS id first if the model wants one (False for text that continues a prompt).
        """
        if not isinstance(text, str):
            raise Error(f"tokenize() takes a str, got {type(text).__name__}")
        for name, value in (("parse_special", parse_special), ("add_bos", add_bos)):
            if not isinstance(value, (bool, np.bool_)):
                raise Error(f"{name} must be True or False, got {value!r}")
        return self.tokenizer.encode(text, parse_special=bool(parse_special), add_bos=bool(add_bos))

    def detokenize(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The text of token ids; special tokens are left out unless skip_special_tokens is False."""
        return self.tokenizer.decode(self._ids(ids), skip_special_tokens=skip_special_tokens)

    def _ids(self, ids, name: str = "ids") -> np.ndarray:
        """ids (a list, numpy or any __dlpack__ array) as checked int32: a view when they are int32 already."""
        return id_array(ids, name, self.vocab_size)

    # ---- the network ---------------------------------------------------------------------------------
    def forward(self, ids: Sequence[int], start_pos: int = 0, encoder_hidden_states=None) -> np.ndarray:
        """Logits (len(ids), vocab) float32 of `ids` at positions start_pos, start_pos + 1, ...

        The KV cache keeps what forward() computed, so a sequence can be fed in pieces: positions below
        start_pos must come from earlier forward() calls on this model (start_pos = 0 starts afresh).
        Encoder-decoder models: `ids` are decoder ids (starting with the decoder start token) attending to
        encoder_hidden_states (S, d) (from encode(), or any array with __dlpack__ / __array__).
        Arrays in: lists, numpy, or any CPU array with __dlpack__ (torch, JAX); C-contiguous int32 ids are
        read in place, other integer ids (torch's int64) are converted, a copy; the states are always copied
        into the session. The logits are a new numpy array (DLPack: torch.from_dlpack(logits) is a view).
        """
        ids = self._ids(ids)
        states = None if encoder_hidden_states is None else _float_array(encoder_hidden_states, "encoder_hidden_states")
        start_pos = _check_int("start_pos", start_pos, 0)
        if ids.size == 0:
            raise Error("forward() needs at least one token")
        if start_pos + ids.size > self.n_ctx:
            raise Error(f"context overflow: positions {start_pos} .. {start_pos + ids.size - 1} do not fit in n_ctx = {self.n_ctx}")
        return self._model.forward(ids, start_pos, True, states)

    @property
    def is_encoder_decoder(self) -> bool:
        return self._encoder is not None

    def encode(self, source: Prompt | None = None, *, pixel_values=None, image=None,
               parse_special: bool = True) -> np.ndarray:
        """The encoder's last hidden state (S, d) float32 of a source: text or ids (translation), or for an
        image encoder `pixel_values` (3, H, W) / (1, 3, H, W) as its processor makes them, or `image` (a path
        or a PIL image, preprocessed here as preprocessor_config.json says)."""
        if self._encoder is None:
            raise Error("encode() needs an encoder-decoder model; this one is decoder-only")
        if self.vision:
            if source is not None:
                raise Error("this model encodes images: give pixel_values= or image=")
            from . import vision
            if (pixel_values is None) == (image is None):
                raise Error("give one of pixel_values= or image=")
            pixels = vision.preprocess(image, self.vision) if image is not None else \
                vision.check_pixels(_float_array(pixel_values, "pixel_values", ndim=None), self.vision)
            return self._encoder.encode(embeddings=vision.patch_embeddings(pixels, self.vision),
                                        n_threads=self.n_threads)
        if pixel_values is not None or image is not None:
            raise Error("this model encodes text: pixel_values and image are for image-to-text models")
        if source is None:
            raise Error("encode() needs a source (text or ids)")
        ids = self._ids(self.tokenize(source, parse_special) if isinstance(source, str) else source, "source")
        if ids.size == 0:
            raise Error("the source is empty")
        return self._encoder.encode(tokens=ids, n_threads=self.n_threads)

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, prompt: Union[Prompt, Sequence[Prompt], None] = None, max_new_tokens: int | None = 128,
                 **params):
        """Continue `prompt`: a str returns the new text, token ids the new ids (list[int]). A list of prompts
        (str or id lists) returns one result per prompt, run together in one batch: each result is the one
        the prompt gets alone, bit for bit. Encoder-decoder models (translation, captioning): the prompt is
        the source, and the result the decoder's new tokens (without its start token); or give
        encoder_hidden_states= (features from another stack), or for image encoders pixel_values= / image=.
        Takes stream()'s parameters, and:

        logprobs=k (int >= 0): return (result, [TokenLogprob per generated token]): each token's log-probability
          and the k most likely alternatives, under the raw logits (log softmax of the model's output, before
          penalties, temperature and filters), as the OpenAI API reports them.
        num_return_sequences=n (> 1): n continuations per prompt (a list), sampled with seeds seed, seed + 1, ...
          or, with num_beams, the n best beams.
        num_beams, length_penalty, early_stopping, return_scores: beam search (see beam_search()).
        """
        num_beams = _check_int("num_beams", params.pop("num_beams", 1), 1)
        if num_beams != 1:
            return self.beam_search(prompt, max_new_tokens, num_beams=num_beams, **params)
        beam_only = [k for k in ("length_penalty", "early_stopping", "return_scores") if k in params]
        if beam_only:
            raise Error(f"{', '.join(beam_only)} only apply to beam search (num_beams > 1)")
        logprobs = params.pop("logprobs", None)
        # as many as num_beams may be (one forward pass's worth); more is a typo, not a request for 10**9 runs
        n_return = _check_int("num_return_sequences", params.pop("num_return_sequences", 1), 1, 512)
        batch = _is_batch(prompt)
        prompts = _rows(prompt) if batch else [prompt]
        if n_return > 1:
            if not params.get("temperature"):
                raise Error("num_return_sequences > 1 without num_beams needs sampling (temperature > 0): greedy "
                            "decoding would return the same sequence n times")
            seeds = self._seeds(params.pop("seed", None), len(prompts))
            prompts = [p for p in prompts for _ in range(n_return)]
            params["seed"] = [s + j for s in seeds for j in range(n_return)]
        runs = self._start(prompts, max_new_tokens, logprobs=logprobs, **params)
        results = [("" if run.decoder else []) for run in runs]
        details = [[] for _ in runs]
        for i, piece, entries in _round_robin(runs):
            results[i] += piece if isinstance(piece, str) else [piece]
            details[i] += entries
        if logprobs is not None:
            results = [(r, d) for r, d in zip(results, details)]
        if n_return > 1:
            results = [results[i:i + n_return] for i in range(0, len(results), n_return)]
        return results if batch else results[0]

    def stream(self, prompt: Union[Prompt, Sequence[Prompt], None] = None, max_new_tokens: int | None = 128, *,
               min_new_tokens: int = 0, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
               min_p: float = 0.0, typical_p: float = 1.0, repetition_penalty: float = 1.0,
               presence_penalty: float = 0.0, frequency_penalty: float = 0.0, no_repeat_ngram_size: int = 0,
               logit_bias: dict | None = None, bad_words_ids: Sequence[Sequence[int]] | None = None,
               seed: int | Sequence[int] | None = None, stop: Sequence[str] | str | None = None,
               stop_token_ids: Sequence[int] | None = None, eos_token_id: int | Sequence[int] | None = None,
               context_shift: bool = False, n_keep: int = 4, parse_special: bool = True,
               encoder_hidden_states=None, pixel_values=None, image=None) -> Iterator:
        """As generate(), one piece at a time: str pieces for a str prompt (never a split UTF-8 character;
        their concatenation is what generate() returns), single ids for an ids prompt. A list of prompts
        yields (index, piece) pairs as the batch advances.

        Greedy unless temperature > 0; then top_k (0: off), top_p (1.0: off), min_p (0: off) and typical_p
        (1.0: off) filter the draw, seeded by `seed` (None: a random seed; for a list of prompts one seed for
        all or one per prompt). A draw depends on (seed, step) only (Philox4x32-10), never on what else ran.
        logit_bias ({id: value}), repetition_penalty (Hugging Face's), presence_penalty / frequency_penalty
        (OpenAI's), no_repeat_ngram_size and bad_words_ids (id sequences never to complete) change the logits
        first, in greedy decoding too; the order is Hugging Face generate()'s (see
        nextoken.sampling_distribution). Stops at an EOS token (the model's, or eos_token_id's, which replace
        them as in Hugging Face) or one of stop_token_ids (returned among the ids, not in the text), after max_new_tokens, or (text prompts) before the first `stop` string.
        min_new_tokens masks EOS until that many tokens exist. parse_special: as in tokenize(), for a str
        prompt. A character cut in the middle by max_new_tokens is dropped from the text.

        context_shift: when the sequence fills n_ctx, keep its first n_keep tokens, drop the oldest half of
        the rest and go on (llama.cpp's context shift; RoPE models). max_new_tokens=None then runs until EOS.
        """
        batch = _is_batch(prompt)
        runs = self._start(_rows(prompt) if batch else [prompt], max_new_tokens, min_new_tokens=min_new_tokens,
                           temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                           repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                           frequency_penalty=frequency_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                           logit_bias=logit_bias, bad_words_ids=bad_words_ids, seed=seed, stop=stop,
                           stop_token_ids=stop_token_ids, eos_token_id=eos_token_id, context_shift=context_shift,
                           n_keep=n_keep, parse_special=parse_special,
                           encoder_hidden_states=encoder_hidden_states, pixel_values=pixel_values, image=image)
        if batch:
            return ((i, piece) for i, piece, _ in _round_robin(runs))
        return (piece for _, piece, _ in _round_robin(runs))

    def beam_search(self, prompt: Union[Prompt, Sequence[Prompt], None] = None, max_new_tokens: int = 128, *,
                    num_beams: int = 4, num_return_sequences: int = 1, length_penalty: float = 1.0,
                    early_stopping=False, return_scores: bool = False, min_new_tokens: int = 0,
                    stop_token_ids: Sequence[int] | None = None, eos_token_id: int | Sequence[int] | None = None,
                    parse_special: bool = True, encoder_hidden_states=None, pixel_values=None, image=None,
                    **processors):
        """Beam search as Hugging Face generate(num_beams=...) does it: each step keeps the num_beams best
        partial continuations by the sum of their tokens' log-probabilities (log-softmax, then the logits
        processors: repetition_penalty, no_repeat_ngram_size, bad_words_ids, logit_bias, ...); a beam ending
        in EOS is a finished hypothesis scored sum / generated_length ** length_penalty (EOS counted).
        early_stopping: True (stop once num_beams hypotheses are finished), False (stop when no running beam
        can beat them, HF's heuristic) or "never". Returns the best continuation (str or ids, as generate());
        num_return_sequences > 1: a list of the best, best first; return_scores: (result, score) pairs.
        A list of prompts returns one such result per prompt. Sampling parameters are rejected."""
        if "temperature" in processors and processors["temperature"] not in (0, 0.0, None) or \
                any(k in processors for k in ("top_k", "top_p", "min_p", "typical_p", "seed", "do_sample")):
            raise Error("beam search takes no sampling parameters (temperature, top_k, top_p, min_p, typical_p, seed)")
        processors.pop("temperature", None)
        for name in ("stop", "logprobs", "context_shift", "n_keep"):
            if name in processors:
                raise Error(f"beam search does not take {name}")
        num_beams = _check_int("num_beams", num_beams, 2)
        num_return_sequences = _check_int("num_return_sequences", num_return_sequences, 1)
        if num_return_sequences > num_beams:
            raise Error(f"num_return_sequences ({num_return_sequences}) must not exceed num_beams ({num_beams})")
        max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 1)
        min_new_tokens = _check_int("min_new_tokens", min_new_tokens, 0)
        if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or \
                not np.isfinite(length_penalty):
            raise Error(f"length_penalty must be a finite number, got {length_penalty!r}")
        if early_stopping not in (True, False, "never"):
            raise Error(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
        if self._encoder is not None and "bad_words_ids" not in processors and self.generation.get("bad_words_ids"):
            processors["bad_words_ids"] = self.generation["bad_words_ids"]  # Marian bans its pad id
        sampling = checked_params(self.vocab_size, greedy_ok=True, temperature=0.0, **processors)
        eos = self._eos_ids(eos_token_id, stop_token_ids)
        batch = _is_batch(prompt)
        prompts = _rows(prompt) if batch else [prompt]
        items = self._inputs(prompts, encoder_hidden_states, pixel_values, image, parse_special)
        for arr, _, _ in items:  # every prompt checked before any runs
            if arr.size + max_new_tokens > self.n_ctx:
                raise Error(f"context overflow: a prompt of {arr.size} tokens plus max_new_tokens = {max_new_tokens} "
                            f"exceeds n_ctx = {self.n_ctx}")
        results = []
        for arr, states, text in items:
            beams = _core.beam_search(self._transformer, arr, self.n_ctx, num_beams, num_return_sequences,
                                      max_new_tokens, min_new_tokens, float(length_penalty),
                                      str(early_stopping).lower(), eos, sampling, self.n_threads, states,
                                      self._forced_bos(), bool(self.generation.get("renormalize_logits")))
            if text:
                beams = [(self.tokenizer.decode(tokens), score) for tokens, score in beams]
            beams = [(tokens if isinstance(tokens, str) else list(tokens), score) for tokens, score in beams]
            out = beams if return_scores else [tokens for tokens, _ in beams]
            results.append(out if num_return_sequences > 1 or return_scores else out[0])
        return results if batch else results[0]

    def _forced_bos(self) -> int:
        """mBART's target language code, forced as the first new token (-1: none)."""
        bos = self.generation.get("forced_bos_token_id")
        return -1 if bos is None else int(bos)

    def _eos_ids(self, eos_token_id, stop_token_ids) -> list[int]:
        """The ids that end a sequence: eos_token_id (Hugging Face's: replaces the model's EOS ids) or the
        model's, plus stop_token_ids."""
        if eos_token_id is None:
            eos = list(self.tokenizer.eos_ids)
        else:
            eos = [eos_token_id] if isinstance(eos_token_id, (int, np.integer)) else _id_list("eos_token_id", eos_token_id)
            eos = [_check_int("an eos_token_id", t, 0, self.vocab_size - 1) for t in eos]
        stops = [] if stop_token_ids is None else _id_list("stop_token_ids", stop_token_ids)
        return eos + [_check_int("a stop_token_ids id", t, 0, self.vocab_size - 1) for t in stops]

    def _seeds(self, seed, n: int) -> list[int]:
        """One seed per prompt: seed given once applies to every prompt; None draws one at random."""
        if seed is None:
            seed = secrets.randbits(64)
        if isinstance(seed, (list, tuple)) or isinstance(seed, np.ndarray) and seed.ndim == 1:
            if len(seed) != n:
                raise Error(f"seed is a list of {len(seed)} seeds for {n} prompts: give one per prompt or a single int")
            return [_check_int("seed", s, 0, 2**64 - 1) for s in seed]
        return [_check_int("seed", seed, 0, 2**64 - 1)] * n

    def _start(self, prompts: Sequence[Prompt], max_new_tokens, *, stop=None, logprobs=None, **params) -> list["_Run"]:
        """One run per prompt, its sequence added to the session (driven by next()); nothing has run yet."""
        stops = _stop_strings(stop)
        sequences, text = self._add(prompts, max_new_tokens, pulled=True, logprobs=logprobs, **params)
        if stops and not all(text):
            for sequence_id in sequences:
                self._model.free(sequence_id)
            raise Error("stop strings need a text prompt")
        end_ids = self._eos_ids(params.get("eos_token_id"), params.get("stop_token_ids"))
        return [_Run(_Sequence(self._model, sequence_id), StreamDecoder(self.tokenizer) if t else None,
                     stops, self.tokenizer if logprobs is not None else None, end_ids)
                for t, sequence_id in zip(text, sequences)]

    def _inputs(self, prompts, encoder_hidden_states, pixel_values, image, parse_special) -> list[tuple]:
        """(decoder ids, encoder states or None, text output?) per prompt. Decoder-only: the prompt itself.
        Encoder-decoder: the prompt is the source, encoded here (or encoder_hidden_states / an image is);
        the decoder starts from the decoder start token."""
        if self._encoder is None:
            if encoder_hidden_states is not None or pixel_values is not None or image is not None:
                raise Error("encoder_hidden_states, pixel_values and image are for encoder-decoder models; this one "
                            "is decoder-only")
            items = [(self._ids(self.tokenize(p, parse_special) if isinstance(p, str) else p,
                                "prompt" if len(prompts) == 1 else f"prompt {i}"), None, isinstance(p, str))
                     for i, p in enumerate(prompts)]
        else:
            start = np.array([self.generation["decoder_start_token_id"]], np.int32)
            given = encoder_hidden_states is not None or pixel_values is not None or image is not None
            if given and any(p is not None for p in prompts):
                raise Error("give a source, or encoder_hidden_states / pixel_values / image, not both")
            if self.vision and not given:
                raise Error("this model encodes images: give pixel_values= or image=")
            # one input for every entry of prompts (num_return_sequences repeats it), encoded once
            if encoder_hidden_states is not None:
                items = [(start, _float_array(encoder_hidden_states, "encoder_hidden_states"), True)] * len(prompts)
            elif given or self.vision:
                items = [(start, self.encode(pixel_values=pixel_values, image=image), True)] * len(prompts)
            else:
                items = [(start, self.encode(p, parse_special=parse_special), isinstance(p, str)) for p in prompts]
        for i, (ids, _, _) in enumerate(items):
            if ids.size == 0:
                raise Error("the prompt is empty" if len(items) == 1 else f"prompt {i} is empty")
        return items

    def _add(self, prompts: Sequence[Prompt], max_new_tokens, *, pulled: bool, min_new_tokens=0, seed=None,
             stop_token_ids=None, eos_token_id=None, logprobs=None, context_shift=False, n_keep=4,
             parse_special=True, encoder_hidden_states=None, pixel_values=None, image=None,
             **sampling_params) -> tuple[list[int], list[bool]]:
        """Every prompt and parameter checked, then one sequence per prompt added to the session: (their ids,
        whether each gives text); nothing has run yet. A bad prompt or parameter adds none."""
        if len(prompts) == 0:
            raise Error("no prompts given")
        items = self._inputs(prompts, encoder_hidden_states, pixel_values, image, parse_special)
        ids = [item[0] for item in items]
        text = [item[2] for item in items]
        if self._encoder is not None and "bad_words_ids" not in sampling_params and \
                self.generation.get("bad_words_ids"):
            sampling_params["bad_words_ids"] = self.generation["bad_words_ids"]  # Marian bans its pad id
        if not isinstance(context_shift, (bool, np.bool_)):  # before its truth value is taken
            raise Error(f"context_shift must be True or False, got {context_shift!r}")
        if max_new_tokens is None:
            if not context_shift:
                raise Error("max_new_tokens=None (no limit) needs context_shift=True")
            max_new_tokens = -1
        else:
            max_new_tokens = _check_int("max_new_tokens", max_new_tokens, 0)
        min_new_tokens = _check_int("min_new_tokens", min_new_tokens, 0)
        n_keep = _check_int("n_keep", n_keep, 0)
        seeds = self._seeds(seed, len(items))
        sampling = checked_params(self.vocab_size, greedy_ok=True, **{"temperature": 0.0, **sampling_params})
        if logprobs is not None:
            logprobs = _check_int("logprobs", logprobs, 0, min(MAX_LOGPROBS, self.vocab_size))
        eos = self._eos_ids(eos_token_id, stop_token_ids)
        if self._encoder is None and any(text) and self.tokenizer.chat_template and not self._warned_raw_prompt and \
                not any(self.tokenizer.has_special(a.tolist()) for a, t in zip(ids, text) if t):
            self._warned_raw_prompt = True
            warnings.warn("this model has a chat template and was given plain text: instruct models often answer "
                          "that with an immediate end of text. Use model.chat([{'role': 'user', 'content': ...}]) "
                          "to have the template applied.", stacklevel=4)
        added = []
        try:
            for (arr, states, _), s in zip(items, seeds):
                # The core checks the rest (context room, positions, logit_bias ids) before anything runs.
                added.append(self._model.add(arr, max_new_tokens, min_new_tokens, s, eos, sampling,
                                             -1 if logprobs is None else logprobs, context_shift, n_keep, pulled,
                                             states, self._forced_bos()))
        except BaseException:  # a bad prompt, or an interrupt: none of the batch stays
            for sequence_id in added:
                self._model.free(sequence_id)
            raise
        return added, text

    # ---- the step API: for callers that schedule sequences themselves ------------------------------------
    def add_sequence(self, prompt: Prompt, max_new_tokens: int | None = 128, **params) -> int:
        """A new sequence continuing `prompt` (ids, or a str to tokenize), with stream()'s parameters (not stop
        strings: text is the caller's) and logprobs=k; its id. Nothing runs until step()."""
        if "stop" in params:
            raise Error("stop strings belong to generate()/stream(); with the step API, detokenize and compare")
        return self._add([prompt], max_new_tokens, pulled=False, **params)[0][0]

    def step(self, ids: Sequence[int] | None = None) -> list:
        """One token for each sequence of `ids` (default: every unfinished sequence added by add_sequence), all
        in one forward pass; a list of StepOutput (id, token, finished, logprob, top). A sequence's tokens are
        the same whatever else is stepped beside it."""
        if ids is not None and not (isinstance(ids, (list, tuple, range)) or isinstance(ids, np.ndarray) and ids.ndim == 1):
            raise Error(f"step() takes a list of sequence ids (or None: every unfinished one), got {ids!r}")
        return self._model.step([] if ids is None else [_check_int("a sequence id", i, 0, 2**64 - 1) for i in ids])

    def fork_sequence(self, sequence_id: int, seed: int | None = None) -> int:
        """A copy of an unfinished sequence (its cache, tokens and parameters) that samples with `seed`
        (None: a random one); its id."""
        return self._model.fork(_check_int("sequence_id", sequence_id, 0, 2**64 - 1), self._seeds(seed, 1)[0])

    def free_sequence(self, sequence_id: int) -> None:
        """Ends a sequence. Its cache is kept for a later prompt that extends its tokens."""
        self._model.free(_check_int("sequence_id", sequence_id, 0, 2**64 - 1))

    def sequence_tokens(self, sequence_id: int) -> list[int]:
        """The prompt and generated tokens of a sequence, less those a context shift dropped (the ones the
        model still sees, which are also the ones repetition penalties look at)."""
        return self._model.tokens(_check_int("sequence_id", sequence_id, 0, 2**64 - 1))

    # ---- chat ----------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[dict], **params) -> str:
        """The assistant's reply to `messages` ([{"role": "user", "content": "..."}, ...]), rendered with the
        model's own chat template (add_generation_prompt on). Takes generate()'s parameters. Special tokens
        spelled inside message contents stay plain text: only the template's own markers are special."""
        return "".join(self.stream_chat(messages, **params))

    def stream_chat(self, messages: Sequence[dict], **params) -> Iterator[str]:
        """As chat(), one text piece at a time."""
        if "parse_special" in params:
            raise Error("chat() never parses special tokens in message contents; parse_special is not taken")
        ids = self.chat_ids(messages)
        stops = _stop_strings(params.pop("stop", None))
        run, = self._start([ids], params.pop("max_new_tokens", 128), **params)
        run.decoder, run.stops = StreamDecoder(self.tokenizer), stops  # the reply as text
        return (piece for _, piece, _ in _round_robin([run]))

    def chat_ids(self, messages: Sequence[dict]) -> list[int]:
        """The token ids of `messages` rendered with the chat template, ending with the assistant's turn."""
        return chat_template.render_ids(self.tokenizer, messages)


def _id_list(name: str, value) -> list:
    """Token ids given as a list, tuple or 1-D array (each checked by the caller)."""
    if isinstance(value, (list, tuple, range)) or isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    raise Error(f"{name} must be a list of token ids, got {value!r}")


def _stop_strings(stop) -> list:
    """stop= as a list of non-empty strings: None, one string, or a list of them."""
    stops = [] if stop is None else [stop] if isinstance(stop, str) else \
        list(stop) if isinstance(stop, (list, tuple)) else None
    if stops is None or any(not isinstance(s, str) or not s for s in stops):
        raise Error(f"stop must be a non-empty string or a list of them, got {stop!r}")
    return stops


def _packed_cache_path(path: Path, packed_cache) -> Path | None:
    """Where load(packed_cache=...) keeps a GGUF file's repacked int8 weights (None: nowhere); its folder is
    made if needed (if it cannot be, nothing is cached)."""
    if packed_cache is False or (packed_cache is None and hub.home().resolve() not in path.resolve().parents):
        return None
    if packed_cache is None or packed_cache is True:
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        target = hub.home() / "packed" / f"{path.stem}-{digest}.int8"
    elif isinstance(packed_cache, (str, os.PathLike)):
        target = Path(packed_cache)
    else:
        raise Error(f"packed_cache must be None, True, False or a path, got {packed_cache!r}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return target


def _is_batch(prompt) -> bool:
    """A list of prompts (str or id sequences), not one prompt (a str or a flat id sequence). An array
    (numpy or __dlpack__) of 2 dimensions is a batch of equal-length id rows."""
    if isinstance(prompt, np.ndarray) or hasattr(prompt, "__dlpack__"):
        return as_array(prompt, "prompt").ndim == 2
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and \
        all(isinstance(p, (str, list, tuple, np.ndarray)) or hasattr(p, "__dlpack__") for p in prompt)


def _rows(batch) -> list:
    """The prompts of a batch: a list's entries, or a 2-D array's rows (views)."""
    return list(batch) if isinstance(batch, (list, tuple)) else list(as_array(batch, "prompt"))


class TokenLogprob(NamedTuple):
    """One generated token with its log-probability and the most likely alternatives (id, log-probability),
    under the raw logits. text: the token's own text (text prompts; "" otherwise)."""
    token: int
    logprob: float
    top_logprobs: list
    text: str = ""


class _Sequence:
    """A session's sequence driven by next(); freed when done or dropped (its cache then serves a prompt
    that extends it)."""

    def __init__(self, session, sequence_id: int):
        self.session, self.id = session, sequence_id

    def next(self):
        return self.session.next(self.id)

    def free(self):
        if self.session is not None:
            self.session.free(self.id)
            self.session = None

    def __del__(self):
        self.free()


class _Run:
    """One prompt's generation: its sequence, and for text prompts the decoder and stop strings."""

    def __init__(self, sequence: _Sequence, decoder: StreamDecoder | None, stops: list[str], tokenizer,
                 end_ids: Sequence[int]):
        self.sequence, self.decoder, self.stops, self.tokenizer = sequence, decoder, stops, tokenizer
        self.end_ids = set(end_ids)  # an EOS / stop id that ends the sequence is left out of the text

    def pieces(self) -> Iterator[tuple]:
        """(piece, [TokenLogprob of the tokens since the last piece]) until the sequence ends."""
        entries = []

        def tokens():
            while (out := self.sequence.next()).token >= 0:
                if self.tokenizer is not None:
                    text = self.tokenizer.decode([out.token], skip_special_tokens=False) if self.decoder else ""
                    entries.append(TokenLogprob(out.token, out.logprob, list(out.top), text))
                if self.decoder is None or not (out.finished and out.token in self.end_ids):
                    yield out.token
            self.sequence.free()

        def taken():
            taken_entries = entries[:]
            entries.clear()
            return taken_entries

        try:
            if self.decoder is None:
                for token in tokens():
                    yield token, taken()
            else:
                for piece in _text(tokens(), self.decoder, self.stops):
                    yield piece, taken()
                if entries:  # tokens whose text was held back or dropped (a stop string, a cut character)
                    yield "", taken()
        finally:
            self.sequence.free()


def _round_robin(runs: list[_Run]) -> Iterator[tuple]:
    """(index, piece, logprob entries) from every run, one token of each in turn, so that the sequences
    wait for a token together and the session steps them in one pass."""
    live = [(i, run.pieces()) for i, run in enumerate(runs)]
    try:
        while live:
            still = []
            for i, pieces in live:
                for piece, entries in pieces:
                    if piece == "" and not entries:
                        continue
                    yield i, piece, entries
                    still.append((i, pieces))
                    break
            live = still
    finally:
        for _, pieces in live:
            pieces.close()


class TextStream:
    """The text of a token stream, pushed one token at a time: pieces never split a UTF-8 character, and
    with stop strings nothing from the first one on (a tail that could still grow into one is held back
    until it cannot). `stopped` turns true when a stop string has appeared."""

    def __init__(self, decoder: StreamDecoder, stops: Sequence[str] = ()):
        self.decoder, self.stops = decoder, list(stops)
        self.text, self.sent, self.stopped = "", 0, False
        self.longest = max((len(s) for s in self.stops), default=0)

    def push(self, token: int) -> str:
        """The text that token makes final ("" if none yet)."""
        if not self.stops:
            return self.decoder.push(token)
        self.text += self.decoder.push(token)
        cut = _first_stop(self.text, self.stops, max(0, self.sent - self.longest))
        if cut >= 0:
            self.stopped = True
            return self._send(cut)
        safe = len(self.text)
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:k]):
                    safe = min(safe, len(self.text) - k)
                    break
        return self._send(safe)

    def flush(self) -> str:
        """The rest, at the end of the tokens (an incomplete last character dropped)."""
        if not self.stops:
            return self.decoder.flush()
        if self.stopped:
            return ""
        self.text += self.decoder.flush()
        cut = _first_stop(self.text, self.stops, max(0, self.sent - self.longest))
        return self._send(cut if cut >= 0 else len(self.text))

    def _send(self, end: int) -> str:
        piece = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece


def _text(tokens: Iterator[int], decoder: StreamDecoder, stops: list[str]) -> Iterator[str]:
    stream = TextStream(decoder, stops)
    for token in tokens:
        if piece := stream.push(token):
            yield piece
        if stream.stopped:
            tokens.close()
            return
    if piece := stream.flush():
        yield piece


def _first_stop(text: str, stops: list[str], start: int) -> int:
    """Where the earliest stop string begins in text[start:], or -1."""
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else -1
