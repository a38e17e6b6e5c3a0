"""Make tiny random Hugging Face checkpoints, and transformers' own output on them, as test fixtures.

Run by hand, never in CI: it needs torch and transformers, and torch is never a test dependency.
The tests only read what this script wrote (safetensors, JSON and .npz files, read with numpy).

    python -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0 transformers safetensors tokenizers sentencepiece
    /tmp/refenv/bin/python tests/make_tiny_hf.py

It writes, under tests/fixtures/hf/, one folder per architecture:

    llama         untied head, llama3 rope scaling (original_max_position_embeddings 32)
    llama_linear  tied head, linear rope scaling x2, config.json rewritten in transformers-4 style
                  (rope_scaling / rope_theta / torch_dtype instead of rope_parameters / dtype)
    mistral       sliding window 8 on every layer, untied head
    qwen2         q/k/v biases, tied head, saved in shards (model.safetensors.index.json)
    gpt2          learned positions, LayerNorm, Conv1D weights, gelu_new, tied head, random biases
    gemma3        Gemma3ForCausalLM: 4 layers (sliding x3, full x1), window 8, two rope bases,
                  query_pre_attn_scalar 24 != head_dim 32, q/k norms, sandwich norms, tied head
    llama_bf16, gemma3_bf16   the same weights as llama / gemma3, every tensor stored as bf16

Each folder holds config.json, generation_config.json, the weights, a tiny byte-level BPE
tokenizer (tokenizer.json + tokenizer_config.json; the same for all), reference.npz and
reference.json. reference.npz holds, computed by transformers in fp32 with eager attention
(bf16 folders: loaded with dtype=float32, i.e. the bf16 weights upcast exactly):

    ids          (12,)        int64    the prompt
    logits       (12, 320)    float32  model(ids).logits
    greedy       (20,)        int64    generate(ids, max_new_tokens=20, min_new_tokens=20,
                                       do_sample=False) new tokens; min_new_tokens makes
                                       generate() mask the EOS ids' logits to -inf
    greedy_stop  (<=20,)      int64    the same without min_new_tokens: generate() stops after
                                       the first EOS id, which it includes
    long_ids     (40,)        int64    a longer sequence (crosses the sliding window of 8)
    long_logits  (40, 320)    float32  model(long_ids).logits

Every parameter is overwritten with seeded random values unlike transformers' init (norm weights
1 + 0.2*N(0,1), Gemma's offset norms 0.5 + 0.2*N(0,1); biases 0.1*N(0,1); see randomize()), so
that each of them matters, and scaled so that greedy decoding does not collapse into repeating one
token. reference.json records, besides versions and the config keys that matter, the smallest
top-1/top-2 logit gap met during greedy decoding (how robust the greedy test is) and, for models
with a sliding window, how much the window changes long_logits (vs the same model without it).
The output is deterministic for given torch / transformers versions.
"""
import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast)

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()
OUT = Path(__file__).resolve().parent / "fixtures" / "hf"

VOCAB = 320
BOS, EOS, PAD = 0, 1, 2
PROMPT_LEN, NEW_TOKENS, LONG_LEN = 12, 20, 40
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=1, head_dim=16, intermediate_size=64, max_position_embeddings=128,
              bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)

SPECS = {
    "llama": dict(
        model_type="llama", seed=1, eos=EOS, config=dict(
            COMMON, tie_word_embeddings=False, attention_bias=False, mlp_bias=False, rms_norm_eps=1e-5,
            hidden_act="silu",
            rope_parameters=dict(rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0,
                                 high_freq_factor=4.0, original_max_position_embeddings=32))),
    "llama_linear": dict(
        model_type="llama", seed=2, eos=EOS, config=dict(
            COMMON, tie_word_embeddings=True, attention_bias=False, rms_norm_eps=1e-6, hidden_act="silu",
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0))),
    "mistral": dict(
        model_type="mistral", seed=3, eos=EOS, config=dict(
            COMMON, tie_word_embeddings=False, sliding_window=8, rms_norm_eps=1e-5, hidden_act="silu",
            rope_parameters=dict(rope_type="default", rope_theta=10000.0))),
    "qwen2": dict(
        model_type="qwen2", seed=4, eos=[EOS, PAD], max_shard_size="40KB", config=dict(
            COMMON, tie_word_embeddings=True, rms_norm_eps=1e-6, hidden_act="silu",
            rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    "gpt2": dict(
        model_type="gpt2", seed=5, eos=EOS, config=dict(
            vocab_size=VOCAB, n_embd=32, n_head=2, n_layer=2, n_positions=128, n_inner=64,
            activation_function="gelu_new", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
            bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD)),
    "gemma3": dict(
        model_type="gemma3_text", seed=6, eos=EOS,
        # Gemma scales embeddings by sqrt(hidden)=8 and stores norms as offsets w (applied as 1 + w):
        # smaller embeddings, and offsets 0.5 (3 for the final norm, which only scales the logits),
        # keep greedy decoding from repeating one token.
        init=dict(emb_std=0.05, gain=1.0, norm_mean=0.5, final_norm_mean=3.0), config=dict(
            COMMON, num_hidden_layers=4, head_dim=32, query_pre_attn_scalar=24, sliding_window=8,
            sliding_window_pattern=4,   # agrees with layer_types (else config.json says 6)
            layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={"full_attention": dict(rope_type="default", rope_theta=1000000.0),
                             "sliding_attention": dict(rope_type="default", rope_theta=10000.0)},
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, rms_norm_eps=1e-6)),
}
BF16 = ["llama", "gemma3"]

# config.json keys worth recording in reference.json (those present are copied)
SUMMARY_KEYS = [
    "architectures", "model_type", "vocab_size", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
    "num_attention_heads", "n_head", "num_key_value_heads", "head_dim", "intermediate_size", "n_inner",
    "max_position_embeddings", "n_positions", "hidden_act", "hidden_activation", "activation_function",
    "rms_norm_eps", "layer_norm_epsilon", "rope_parameters", "rope_scaling", "rope_theta",
    "sliding_window", "use_sliding_window", "max_window_layers", "layer_types", "query_pre_attn_scalar",
    "final_logit_softcapping", "attn_logit_softcapping", "attention_bias", "mlp_bias",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "dtype", "torch_dtype",
]


# ---------------------------------------------------------------------------------------- tokenizer
def make_tokenizer():
    """Byte-level BPE: <s> </s> <pad> at 0, 1, 2, the 256 byte symbols at 3..258, then merges to 320."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    assert len(alphabet) == 256
    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    merges = []
    words = ["Ġthe", "Ġand", "ing", "Ġof", "Ġto", "Ġin", "er", "on", "Ġa", "Ġis", "Ġthat", "Ġit", "ed",
             "Ġfor", "ĠThe", "Ġwas", "Ġwith", "es", "Ġhe", "Ġon", "at", "en", "or", "Ġbe", "Ġas", "an",
             "Ġyou", "Ġhave", "Ġare", "Ġthis", "ĠIn", "Ġnot", "Ġby", "Ġat", "ĠĠ", "ĠĠĠĠ", "Ċ", "ĊĊ",
             "Ġwhich", "Ġfrom", "Ġhis", "Ġthey", "Ġwere", "Ġwill", "Ġone", "Ġall", "Ġcan", "Ġtime"]
    for w in words:
        for k in range(2, len(w) + 1):
            if len(vocab) >= VOCAB:
                break
            if w[:k] not in vocab:
                merges.append((w[:k - 1], w[k - 1]))
                vocab[w[:k]] = len(vocab)
    # fill the rest with single-digit-pair merges, deterministic
    digits = "0123456789"
    i = 0
    while len(vocab) < VOCAB:
        a, b = digits[i // 10], digits[i % 10]
        if a + b not in vocab:
            merges.append((a, b))
            vocab[a + b] = len(vocab)
        i += 1
    assert len(vocab) == VOCAB and sorted(vocab.values()) == list(range(VOCAB))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<s>", "</s>", "<pad>")])
    assert [tok.token_to_id(t) for t in ("<s>", "</s>", "<pad>")] == [0, 1, 2]
    assert tok.get_vocab_size() == VOCAB
    return tok


def save_tokenizer(tok, folder):
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=128)
    fast.save_pretrained(folder)


# ------------------------------------------------------------------------------------------- models
@torch.no_grad()
def randomize(model, seed, emb_std=0.2, gain=2.0, norm_mean=1.0, final_norm_mean=None):
    """Overwrite every parameter with seeded values that are not transformers' default init.

    biases 0.1*N(0,1); norm weights norm_mean + 0.2*N(0,1) (Gemma stores its norms as offsets
    from 1, so it gets a smaller mean); embeddings emb_std*N(0,1); matrices gain*N(0,1)/sqrt(fan_in).
    The gain and the embedding scale are chosen so that greedy decoding does not fall into
    repeating one token at once (tied random models like to), i.e. the greedy test means something.
    """
    g = torch.Generator().manual_seed(seed)
    is_gpt2 = model.config.model_type == "gpt2"
    final_norms = ("model.norm.weight", "transformer.ln_f.weight")
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:       # tied weights: once
            continue
        seen.add(id(p))
        r = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "bias":
            v = 0.1 * r
        elif p.dim() == 1:          # a norm's weight
            mean = final_norm_mean if name in final_norms and final_norm_mean is not None else norm_mean
            v = mean + 0.2 * r
        elif "embed_tokens" in name or name.endswith("wte.weight") or name.endswith("wpe.weight"):
            v = emb_std * r
        else:
            fan_in = p.shape[0] if is_gpt2 else p.shape[1]   # gpt2 Conv1D is (in, out)
            v = gain * r / fan_in ** 0.5
        p.copy_(v.to(p.dtype))
    return model


def build(spec):
    torch.manual_seed(spec["seed"])
    cfg = AutoConfig.for_model(spec["model_type"], **spec["config"])
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
    randomize(model, 1000 + spec["seed"], **spec.get("init", {}))
    model.eval()
    return model


def load(folder, **overrides):
    kw = {}
    if overrides:
        cfg = AutoConfig.from_pretrained(folder)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        kw["config"] = cfg
    m = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager", **kw)
    return m.eval()


def gen_config(spec):
    return GenerationConfig(bos_token_id=BOS, eos_token_id=spec["eos"], pad_token_id=PAD, do_sample=False)


@torch.no_grad()
def logits_of(model, ids):
    return model(torch.tensor([ids])).logits[0].float().numpy()


@torch.no_grad()
def reference(model, ids, long_ids):
    logits = logits_of(model, ids)
    long_logits = logits_of(model, long_ids)
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                         min_new_tokens=NEW_TOKENS, do_sample=False)
    greedy = out[0, len(ids):].numpy().astype(np.int64)
    assert len(greedy) == NEW_TOKENS
    # Cross-check generate()'s cached decoding against full forwards (argmax with the EOS ids masked,
    # as min_new_tokens does); and say whether the EOS masking changed anything.
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    full = logits_of(model, list(ids) + greedy.tolist())
    # generate() without min_new_tokens: stops after the first EOS id (which it includes)
    stop = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS, do_sample=False)
    greedy_stop = stop[0, len(ids):].numpy().astype(np.int64)
    eos_masked_steps = []
    margin = np.inf
    for t in range(NEW_TOKENS):
        row = full[len(ids) - 1 + t].copy()
        if int(np.argmax(row)) in eos:
            eos_masked_steps.append(t)
        row[eos] = -np.inf
        assert int(np.argmax(row)) == int(greedy[t]), "generate() disagrees with a full forward"
        top2 = np.sort(row)[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
    first = eos_masked_steps[0] if eos_masked_steps else None
    if first is None:
        assert np.array_equal(greedy_stop, greedy), "stop-at-EOS greedy inconsistent"
    else:
        assert len(greedy_stop) == first + 1 and int(greedy_stop[-1]) in eos
        assert np.array_equal(greedy_stop[:first], greedy[:first]), "stop-at-EOS greedy inconsistent"
    return dict(logits=logits, long_logits=long_logits, greedy=greedy, greedy_stop=greedy_stop), dict(
        greedy_steps_where_min_new_tokens_masked_eos=eos_masked_steps, greedy_min_top1_top2_margin=margin,
        greedy_distinct_tokens=len(set(greedy.tolist())))


def folder_size(folder):
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def write_reference(folder, name, ids, long_ids, res, extra):
    np.savez_compressed(folder / "reference.npz", ids=np.asarray(ids, np.int64), logits=res["logits"],
                        greedy=res["greedy"], greedy_stop=res["greedy_stop"], long_ids=np.asarray(long_ids, np.int64),
                        long_logits=res["long_logits"])
    cfg = json.loads((folder / "config.json").read_text())
    gcfg = json.loads((folder / "generation_config.json").read_text())
    info = {
        "name": name,
        "made_by": "tests/make_tiny_hf.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "attn_implementation": "eager",
        "compute_dtype": "float32",
        "config": {k: cfg[k] for k in SUMMARY_KEYS if k in cfg},
        "generation_eos_token_id": gcfg.get("eos_token_id"),
        "ids": [int(i) for i in ids],
        "greedy": [int(i) for i in res["greedy"]],
        "greedy_stop": [int(i) for i in res["greedy_stop"]],
        "long_ids": [int(i) for i in long_ids],
        "max_abs_logit": float(max(np.abs(res["logits"]).max(), np.abs(res["long_logits"]).max())),
        **extra,
    }
    (folder / "reference.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def rewrite_config_v4(folder):
    """Rewrite config.json as transformers 4 wrote it: rope_scaling + rope_theta, torch_dtype."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    rp = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rp.pop("rope_theta")
    rp["type"] = rp["rope_type"]
    cfg["rope_scaling"] = {"factor": rp["factor"], "rope_type": rp["rope_type"], "type": rp["type"]}
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg.pop("layer_types", None)   # not written by transformers 4 for llama
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def main():
    tok = make_tokenizer()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rows = []
    for name, spec in SPECS.items():
        model = build(spec)
        model.generation_config = gen_config(spec)
        folder = OUT / name
        model.save_pretrained(folder, max_shard_size=spec.get("max_shard_size", "50GB"))
        save_tokenizer(tok, folder)
        before_rewrite = None
        if name == "llama_linear":
            before_rewrite = load(folder)

        rng = np.random.default_rng(100 + spec["seed"])
        ids = rng.integers(3, VOCAB, PROMPT_LEN).tolist()
        long_ids = rng.integers(3, VOCAB, LONG_LEN).tolist()

        if name == "llama_linear":
            ref_before = logits_of(before_rewrite, long_ids)
            rewrite_config_v4(folder)

        m = load(folder)
        # what we saved is what we built
        assert np.array_equal(logits_of(m, ids), logits_of(model, ids)), name
        res, extra = reference(m, ids, long_ids)
        if name == "llama_linear":
            same = np.array_equal(ref_before, res["long_logits"])
            assert same, "the transformers-4 style config.json does not reload to the same model"
            extra["v4_config_reload_identical"] = True
        sw = getattr(m.config, "sliding_window", None)
        if sw is not None:
            nowin = load(folder, sliding_window=4096)
            d = float(np.abs(logits_of(nowin, long_ids) - res["long_logits"]).max())
            extra["sliding_window_effect_max_abs_diff"] = d
            assert d > 0, f"{name}: sliding window had no effect"
        info = write_reference(folder, name, ids, long_ids, res, extra)
        rows.append((name, info, extra))

        if name in BF16:
            bf = OUT / f"{name}_bf16"
            mb = copy.deepcopy(model).to(torch.bfloat16)
            mb.config.dtype = torch.bfloat16
            mb.generation_config = gen_config(spec)
            mb.save_pretrained(bf)
            save_tokenizer(tok, bf)
            mbf = load(bf)   # bf16 weights upcast to fp32, computed in fp32
            res_b, extra_b = reference(mbf, ids, long_ids)
            extra_b["weights_stored_as"] = "bfloat16, upcast to float32 for the reference"
            if sw is not None:
                nowin = load(bf, sliding_window=4096)
                d = float(np.abs(logits_of(nowin, long_ids) - res_b["long_logits"]).max())
                extra_b["sliding_window_effect_max_abs_diff"] = d
                assert d > 0
            extra_b["max_abs_diff_vs_fp32_folder"] = float(np.abs(res_b["logits"] - res["logits"]).max())
            info_b = write_reference(bf, f"{name}_bf16", ids, long_ids, res_b, extra_b)
            rows.append((f"{name}_bf16", info_b, extra_b))

    for f in OUT.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    print(f"transformers {transformers.__version__}  torch {torch.__version__}")
    total = 0
    for name, info, extra in rows:
        size = folder_size(OUT / name)
        total += size
        print(f"{name:14s} {size / 1024:7.1f} KB  max|logit| {info['max_abs_logit']:7.3f}  "
              + "  ".join(f"{k}={v}" for k, v in extra.items()))
    print(f"total {total / 1024:.1f} KB")


if __name__ == "__main__":
    sys.exit(main())
