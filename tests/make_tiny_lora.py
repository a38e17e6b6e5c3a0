"""Make tiny random PEFT LoRA adapters for the tiny HF checkpoints, and transformers' output with them merged.

Run by hand, never in CI: it needs torch, transformers and peft, and torch is never a test
dependency. The tests only read what this script wrote (JSON, safetensors and .npz files).
It needs the base folders written by tests/make_tiny_hf.py (run that first if they change).

    /work/refenv/bin/pip install torch==2.13.0 transformers safetensors peft
    /work/refenv/bin/python tests/make_tiny_lora.py

It writes, under tests/fixtures/lora/, one adapter folder per base folder tests/fixtures/hf/<name>:

    llama   r=4, lora_alpha=8  (scaling alpha/r = 2)              q_proj, v_proj, down_proj
    gpt2    r=4, lora_alpha=8  (scaling 2), fan_in_fan_out=True  c_attn, mlp.c_proj (Conv1D layers;
            "mlp.c_proj" matches transformer.h.N.mlp.c_proj only, not attn.c_proj)
    qwen2   r=4, lora_alpha=16, use_rslora=True (scaling alpha/sqrt(r) = 8)
                                                                 q_proj, k_proj, o_proj, gate_proj

Each folder holds what PeftModel.save_pretrained() writes (adapter_config.json and an fp32
adapter_model.safetensors, tensors named base_model.model.<module>.lora_A.weight (r, in) and
...lora_B.weight (out, r)), plus reference.npz and reference.json. PEFT initialises lora_B to
zero; here every lora_A / lora_B weight is overwritten with seeded values a*N(0,1)/sqrt(fan_in)
(fan_in = in for A, r for B), a chosen so that the merged delta scaling*B@A is about
DELTA_GAIN*N(0,1)/sqrt(in) (the base matrices are 2*N(0,1)/sqrt(in)): the adapter clearly
changes the logits, and greedy decoding still varies.

reference.npz, computed by transformers in fp32 with eager attention on the base model with the
adapter MERGED (PeftModel.merge_and_unload()):

    ids     (12,)        int64    the base folder's prompt (tests/fixtures/hf/<name>/reference.npz)
    logits  (12, 320)    float32  merged_model(ids).logits
    greedy  (20,)        int64    generate(ids, max_new_tokens=20, min_new_tokens=20,
                                  do_sample=False) new tokens

reference.json records versions, the adapter config, the scaling, max |merged - base| logits (the
adapter matters), max |unmerged PeftModel - merged| logits
(checked <= 1e-5 * max(1, max |logit|): fp32 rounding only), the check of the
merge rule W' = W + scaling * B@A (transposed for fan_in_fan_out) recomputed from the saved files,
and the smallest top-1/top-2 logit gap met during greedy decoding.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
transformers.utils.logging.disable_progress_bar()
HERE = Path(__file__).resolve().parent
BASE = HERE / "fixtures" / "hf"
OUT = HERE / "fixtures" / "lora"
NEW_TOKENS = 20
DELTA_GAIN = 0.6

SPECS = {
    "llama": dict(seed=22, lora=dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])),
    "gpt2": dict(seed=12, lora=dict(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_proj"],
                                    fan_in_fan_out=True)),
    "qwen2": dict(seed=13, lora=dict(r=4, lora_alpha=16, use_rslora=True,
                                     target_modules=["q_proj", "k_proj", "o_proj", "gate_proj"])),
}
CONFIG_KEYS = ["peft_type", "task_type", "r", "lora_alpha", "use_rslora", "target_modules", "fan_in_fan_out",
               "bias", "modules_to_save", "lora_dropout", "use_dora", "init_lora_weights", "layers_to_transform",
               "rank_pattern", "alpha_pattern", "base_model_name_or_path"]


def load_base(name):
    m = AutoModelForCausalLM.from_pretrained(BASE / name, dtype=torch.float32, attn_implementation="eager")
    return m.eval()


@torch.no_grad()
def logits_of(model, ids):
    return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


@torch.no_grad()
def randomize_lora(model, seed, scaling):
    """lora_A, lora_B <- a*N(0,1)/sqrt(fan_in) with a = sqrt(DELTA_GAIN/scaling)."""
    g = torch.Generator().manual_seed(seed)
    a = (DELTA_GAIN / scaling) ** 0.5
    n = 0
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            p.copy_(a * r / p.shape[1] ** 0.5)          # nn.Linear weight: (out, in)
            n += 1
        else:
            assert not p.requires_grad, f"unexpected trainable parameter {name}"
    assert n > 0
    return n


@torch.no_grad()
def greedy_of(model, ids):
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                         min_new_tokens=NEW_TOKENS, do_sample=False)
    greedy = out[0, len(ids):].numpy().astype(np.int64)
    assert len(greedy) == NEW_TOKENS
    # cross-check against full forwards (EOS ids masked, as min_new_tokens does); smallest top-2 gap
    eos = model.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    full = logits_of(model, list(ids) + greedy.tolist())
    margin = np.inf
    for t in range(NEW_TOKENS):
        row = full[len(ids) - 1 + t].copy()
        row[eos] = -np.inf
        assert int(np.argmax(row)) == int(greedy[t]), "generate() disagrees with a full forward"
        top2 = np.sort(row)[-2:]
        margin = min(margin, float(top2[1] - top2[0]))
    return greedy, margin


def base_weights(name):
    w = {}
    for f in sorted((BASE / name).glob("*.safetensors")):
        w.update(load_file(f))
    return w


def check_merge_rule(name, folder, merged, scaling, fan_in_fan_out):
    """Recompute W + scaling * B@A (transposed when fan_in_fan_out) from the saved files with numpy."""
    base = base_weights(name)
    ad = load_file(folder / "adapter_model.safetensors")
    sd = {k: v.numpy() for k, v in merged.state_dict().items()}
    worst, count = 0.0, 0
    for k in sorted(ad):
        if not k.endswith(".lora_A.weight"):
            continue
        mod = k[len("base_model.model."):-len(".lora_A.weight")]
        A, B = ad[k].astype(np.float64), ad[k.replace("lora_A", "lora_B")].astype(np.float64)
        delta = scaling * (B @ A)                    # (out, in)
        if fan_in_fan_out:
            delta = delta.T                          # Conv1D stores (in, out)
        W = base[mod + ".weight"].astype(np.float64)
        assert W.shape == delta.shape, (mod, W.shape, delta.shape)
        worst = max(worst, float(np.abs(W + delta - sd[mod + ".weight"]).max()))
        count += 1
    assert worst < 1e-5, f"{name}: merge rule mismatch {worst}"
    return count, worst


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rows = []
    for name, spec in SPECS.items():
        folder = OUT / name
        base_ref = np.load(BASE / name / "reference.npz")
        ids = base_ref["ids"].tolist()
        base_logits = logits_of(load_base(name), ids)
        assert np.allclose(base_logits, base_ref["logits"], atol=1e-5), f"{name}: base folder changed?"

        cfg = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, bias="none", **spec["lora"])
        pm = get_peft_model(load_base(name), cfg).eval()
        lc = pm.peft_config["default"]
        r, alpha = lc.r, lc.lora_alpha
        scaling = alpha / r ** 0.5 if lc.use_rslora else alpha / r
        layer_scalings = {m.scaling["default"] for m in pm.modules() if isinstance(m, peft.tuners.lora.LoraLayer)}
        assert layer_scalings == {scaling}, (layer_scalings, scaling)
        randomize_lora(pm, 2000 + spec["seed"], scaling)
        lc.base_model_name_or_path = f"tests/fixtures/hf/{name}"   # not this machine's absolute path
        pm.save_pretrained(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json",
                                                            "adapter_model.safetensors"], list(folder.iterdir())
        (folder / "README.md").unlink()    # PEFT's model-card template: not needed
        # PEFT writes target_modules as list(set), whose order depends on PYTHONHASHSEED: sort it,
        # keeping PEFT's own formatting (json.dumps(indent=2, sort_keys=True)), so reruns are identical
        path = folder / "adapter_config.json"
        saved = json.loads(path.read_text())
        assert sorted(saved["target_modules"]) == sorted(spec["lora"]["target_modules"]), saved["target_modules"]
        saved["target_modules"] = sorted(saved["target_modules"])
        path.write_text(json.dumps(saved, indent=2, sort_keys=True))

        unmerged = logits_of(pm, ids)
        # reloading the saved adapter gives the same model
        reloaded = PeftModel.from_pretrained(load_base(name), folder).eval()
        assert np.array_equal(logits_of(reloaded, ids), unmerged), f"{name}: reload differs"

        merged = pm.merge_and_unload().eval()
        assert not any("lora" in k for k in merged.state_dict()), name
        logits = logits_of(merged, ids)
        d_unmerged = float(np.abs(unmerged - logits).max())
        # fp32 rounding only (merging reorders the sums): about 1e-6 relative to the largest logit
        tol = 1e-5 * max(1.0, float(np.abs(logits).max()))
        assert d_unmerged <= tol, f"{name}: unmerged vs merged {d_unmerged} > {tol}"
        n_mod, d_rule = check_merge_rule(name, folder, merged, scaling, bool(lc.fan_in_fan_out))
        d_base = float(np.abs(logits - base_logits).max())
        greedy, margin = greedy_of(merged, ids)

        saved_cfg = json.loads((folder / "adapter_config.json").read_text())
        tensors = {k: list(v.shape) for k, v in sorted(load_file(folder / "adapter_model.safetensors").items())}
        assert all(v.dtype == np.float32 for v in load_file(folder / "adapter_model.safetensors").values())
        np.savez_compressed(folder / "reference.npz", ids=np.asarray(ids, np.int64), logits=logits, greedy=greedy)
        info = {
            "name": name,
            "made_by": "tests/make_tiny_lora.py",
            "base_folder": f"tests/fixtures/hf/{name}",
            "peft": peft.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "attn_implementation": "eager",
            "compute_dtype": "float32",
            "reference_from": "PeftModel.merge_and_unload()",
            "adapter_config": {k: saved_cfg.get(k) for k in CONFIG_KEYS},
            "scaling": scaling,
            "scaling_rule": "lora_alpha / sqrt(r)" if lc.use_rslora else "lora_alpha / r",
            "lora_init": f"a*N(0,1)/sqrt(fan_in), a = sqrt({DELTA_GAIN}/scaling); seed {2000 + spec['seed']}",
            "tensors": tensors,
            "ids": [int(i) for i in ids],
            "greedy": [int(i) for i in greedy],
            "base_greedy": [int(i) for i in base_ref["greedy"]],
            "greedy_differs_from_base": bool(not np.array_equal(greedy, base_ref["greedy"])),
            "greedy_distinct_tokens": len(set(greedy.tolist())),
            "greedy_min_top1_top2_margin": margin,
            "max_abs_diff_merged_vs_base_logits": d_base,
            "max_abs_diff_unmerged_vs_merged_logits": d_unmerged,
            "merge_rule_checked_modules": n_mod,
            "merge_rule_max_abs_diff": d_rule,
            "max_abs_logit": float(np.abs(logits).max()),
        }
        assert d_base > 0.5, f"{name}: the adapter barely matters ({d_base})"
        (folder / "reference.json").write_text(json.dumps(info, indent=1) + "\n")
        rows.append(info)

    for f in OUT.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    print(f"peft {peft.__version__}  transformers {transformers.__version__}  torch {torch.__version__}")
    for info in rows:
        folder = OUT / info["name"]
        size = sum(f.stat().st_size for f in folder.iterdir())
        assert size < 60 * 1024, (info["name"], size)
        print(f"{info['name']:6s} {size / 1024:5.1f} KB  scaling {info['scaling']}  "
              f"|merged-base| {info['max_abs_diff_merged_vs_base_logits']:.4f}  "
              f"|unmerged-merged| {info['max_abs_diff_unmerged_vs_merged_logits']:.2e}  "
              f"rule {info['merge_rule_max_abs_diff']:.2e}  margin {info['greedy_min_top1_top2_margin']:.4f}  "
              f"greedy differs {info['greedy_differs_from_base']}  distinct {info['greedy_distinct_tokens']}")


if __name__ == "__main__":
    sys.exit(main())
