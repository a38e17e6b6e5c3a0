#!/usr/bin/env python3
"""Generate tests/fixtures/sampling_reference.npz from Hugging Face transformers.

Reference environment: transformers 5.24.0 + torch 2.13 (CPU), e.g.
    /work/refenv/bin/python tests/make_reference_sampling.py

The processors are applied in the order GenerationMixin._get_logits_processor
(transformers/generation/utils.py, 5.24) builds them when every option is set:

    1. SequenceBiasLogitsProcessor      (sequence_bias; our logit_bias = single-token sequences)
    2. RepetitionPenaltyLogitsProcessor (repetition_penalty)
       [+ OpenAI presence/frequency penalties, NOT in transformers; computed here
          right after the repetition penalty, only in cases with reference == "hf+openai_penalties"]
    3. NoRepeatNGramLogitsProcessor     (no_repeat_ngram_size)
    --- "warpers" (only with do_sample=True), min_tokens_to_keep = 1 ---
    4. TemperatureLogitsWarper
    5. TopKLogitsWarper
    6. TopPLogitsWarper
    7. MinPLogitsWarper
    8. TypicalLogitsWarper

Each case stores probs = softmax(processed scores) in float32: the distribution
sampling draws from.

npz layout:
    params                JSON string: list of one dict per case (all keys present, neutral values when unused)
    case{i}_logits        float32 [V]
    case{i}_history       int64   [L]  (previous ids, oldest first; input_ids = [history])
    case{i}_probs         float32 [V]

Per-case extra keys in params:
    reference       "hf" (transformers only, presence/frequency = 0) or
                    "hf+openai_penalties" (presence/frequency computed in torch here:
                    logits[i] -= presence * (count_i > 0) + frequency * count_i, counts over the whole history)
    tie_sensitive   True if the result changed when the vocabulary was permuted, i.e. it depends on how
                    torch.sort orders exactly tied values (top_p boundary ties). Tests should skip or
                    only check loosely such cases.
    min_margin      smallest distance (float64) between a cumulative/threshold quantity and its cut-off in
                    top_p / min_p / typical_p; tiny values mean float rounding may legitimately flip a token.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers.generation.logits_process import (
    LogitsProcessor,
    MinPLogitsWarper,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

SEED = 20240611
N_HF = 60
N_PF = 10

NEUTRAL = dict(
    temperature=1.0,
    top_k=0,
    top_p=1.0,
    min_p=0.0,
    typical_p=1.0,
    repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    logit_bias={},
    presence_penalty=0.0,
    frequency_penalty=0.0,
)
CHOICES = dict(
    temperature=[0.3, 0.7, 1.0, 1.8],
    top_k=[0, 1, 3, 40],
    top_p=[1.0, 0.9, 0.5, 0.1],
    min_p=[0.0, 0.05, 0.2],
    typical_p=[1.0, 0.9, 0.5],
    repetition_penalty=[1.0, 1.3, 0.8],
    no_repeat_ngram_size=[0, 2, 3],
    presence_penalty=[0.0, 0.5, -0.3],
    frequency_penalty=[0.0, 0.5, -0.3],
)


class OpenAIPenalties(LogitsProcessor):
    """logits[i] -= presence * (count_i > 0) + frequency * count_i (counts over input_ids)."""

    def __init__(self, presence, frequency):
        self.presence = float(presence)
        self.frequency = float(frequency)

    def __call__(self, input_ids, scores):
        counts = torch.zeros_like(scores)
        if input_ids.shape[1] > 0:
            counts.scatter_add_(1, input_ids, torch.ones_like(input_ids, dtype=scores.dtype))
        pen = self.presence * (counts > 0).to(scores.dtype) + self.frequency * counts
        return scores - pen


def build(p):
    """LogitsProcessorList in generate()'s order. Neutral values add no processor (as in generate)."""
    procs = []
    if p["logit_bias"]:
        procs.append(SequenceBiasLogitsProcessor({(int(k),): float(v) for k, v in p["logit_bias"].items()}))
    if p["repetition_penalty"] != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(float(p["repetition_penalty"])))
    if p["presence_penalty"] != 0.0 or p["frequency_penalty"] != 0.0:
        procs.append(OpenAIPenalties(p["presence_penalty"], p["frequency_penalty"]))
    if p["no_repeat_ngram_size"] > 0:
        procs.append(NoRepeatNGramLogitsProcessor(int(p["no_repeat_ngram_size"])))
    if p["temperature"] != 1.0:
        procs.append(TemperatureLogitsWarper(float(p["temperature"])))
    if p["top_k"] != 0:
        procs.append(TopKLogitsWarper(top_k=int(p["top_k"]), min_tokens_to_keep=1))
    if p["top_p"] < 1.0:
        procs.append(TopPLogitsWarper(top_p=float(p["top_p"]), min_tokens_to_keep=1))
    if p["min_p"] > 0.0:  # generate() appends MinP whenever min_p is not None; min_p == 0 is a no-op
        procs.append(MinPLogitsWarper(min_p=float(p["min_p"]), min_tokens_to_keep=1))
    if p["typical_p"] < 1.0:
        procs.append(TypicalLogitsWarper(mass=float(p["typical_p"]), min_tokens_to_keep=1))
    return procs


def margin(proc, scores):
    """Distance of the decisive quantity to the cut-off, float64, for threshold-based filters."""
    s = scores[0].double()
    pr = torch.softmax(s, -1)
    if isinstance(proc, TopPLogitsWarper):
        cum = torch.sort(pr).values.cumsum(-1)
        return float((cum - (1 - proc.top_p)).abs().min())
    if isinstance(proc, MinPLogitsWarper):
        fin = pr[torch.isfinite(s)]
        return float((fin - proc.min_p * pr.max()).abs().min())
    if isinstance(proc, TypicalLogitsWarper):
        lp = torch.log_softmax(s, -1)
        ent = -(lp * pr).nansum()
        shifted = (-lp - ent).abs()
        order = torch.sort(shifted).indices
        cum = pr[order].cumsum(-1)
        return float((cum - proc.mass).abs().min())
    return float("inf")


def apply(p, logits, history, with_margin=False):
    procs = build(p)
    input_ids = torch.tensor(np.asarray(history, dtype=np.int64)[None, :])
    scores = torch.tensor(logits[None, :].copy(), dtype=torch.float32)
    m = float("inf")
    for proc in procs:
        if with_margin:
            m = min(m, margin(proc, scores))
        scores = proc(input_ids, scores)
    probs = torch.softmax(scores, dim=-1)[0].numpy().astype(np.float32)
    return probs, m


def permuted(p, logits, history, perm):
    """Run the same case with vocabulary ids relabelled: new id j holds old id perm[j]."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    q = dict(p)
    q["logit_bias"] = {str(int(inv[int(k)])): v for k, v in p["logit_bias"].items()}
    probs_p, _ = apply(q, logits[perm], inv[np.asarray(history, dtype=np.int64)])
    back = np.empty_like(probs_p)
    back[perm] = probs_p
    return back


def make_logits(rng, V):
    x = rng.normal(0.0, 3.0, V).astype(np.float32)
    if rng.random() < 0.4:  # exact ties
        n = int(rng.integers(1, max(2, V // 5)))
        src = rng.integers(0, V, n)
        dst = rng.integers(0, V, n)
        x[dst] = x[src]
        # always tie the current maximum with something as well, sometimes
        if rng.random() < 0.5:
            x[int(rng.integers(0, V))] = x.max()
    if rng.random() < 0.2:  # -inf entries
        n = int(rng.integers(1, max(2, V // 4)))
        x[rng.integers(0, V, n)] = -np.inf
        if not np.isfinite(x).any():
            x[0] = 0.0
    return x


def random_params(rng, V, penalties):
    p = {k: (dict(v) if isinstance(v, dict) else v) for k, v in NEUTRAL.items()}
    for k, choices in CHOICES.items():
        if k in ("presence_penalty", "frequency_penalty"):
            continue
        if rng.random() < 0.55:
            p[k] = choices[int(rng.integers(0, len(choices)))]
    if rng.random() < 0.4:
        n = int(rng.integers(1, min(V, 5) + 1))
        ids = rng.choice(V, n, replace=False)
        p["logit_bias"] = {str(int(i)): float(np.round(rng.uniform(-5, 5), 3)) for i in ids}
    if penalties:
        while p["presence_penalty"] == 0.0 and p["frequency_penalty"] == 0.0:
            p["presence_penalty"] = CHOICES["presence_penalty"][int(rng.integers(0, 3))]
            p["frequency_penalty"] = CHOICES["frequency_penalty"][int(rng.integers(0, 3))]
    return p


def single_param_cases():
    """A few cases isolating one processor each (first in the fixture)."""
    out = []
    for k, v in [("temperature", 0.7), ("top_k", 3), ("top_p", 0.5), ("min_p", 0.2), ("typical_p", 0.5),
                 ("repetition_penalty", 1.3), ("repetition_penalty", 0.8), ("no_repeat_ngram_size", 2),
                 ("logit_bias", {"1": 4.5, "3": -2.0})]:
        p = {kk: (dict(vv) if isinstance(vv, dict) else vv) for kk, vv in NEUTRAL.items()}
        p[k] = v
        out.append(p)
    # everything at once
    p = dict(NEUTRAL, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.9, repetition_penalty=1.3,
             no_repeat_ngram_size=2, logit_bias={"2": 3.0, "5": -1.5})
    out.append(p)
    return out


def main():
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "sampling_reference.npz")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    rng = np.random.default_rng(SEED)
    torch.manual_seed(0)

    fixed = single_param_cases()
    arrays, params = {}, []
    total = N_HF + N_PF
    i = 0
    attempts = 0
    while i < total:
        attempts += 1
        penalties = i >= N_HF
        if i < len(fixed):
            V = 50
            p = fixed[i]
        else:
            V = int(rng.choice([7, 50, 1000]))
            p = random_params(rng, V, penalties)
        L = int(rng.integers(0, 31))
        if i < len(fixed) and p["no_repeat_ngram_size"]:
            L = 20
        # small id range in history sometimes so that repeats / n-grams actually occur
        hi = V if rng.random() < 0.5 else min(V, 6)
        history = rng.integers(0, hi, L).astype(np.int64)
        if L >= 4 and rng.random() < 0.5:
            history[-2:] = history[:2]  # force a repeated prefix for n-gram bans
        logits = make_logits(rng, V)

        probs, m = apply(p, logits, history, with_margin=True)
        if not np.all(np.isfinite(probs)):  # everything banned -> NaN in HF; draw again
            continue
        tie_sensitive = False
        prng = np.random.default_rng(1000 + i)
        perms = [np.arange(V)[::-1].copy()] + [prng.permutation(V) for _ in range(4)]
        for perm in perms:
            back = permuted(p, logits, history, perm)
            if not np.allclose(back, probs, rtol=1e-5, atol=1e-6) or not np.array_equal(back > 0, probs > 0):
                tie_sensitive = True
                break
        rec = dict(p)
        rec["logit_bias"] = {str(k): float(v) for k, v in p["logit_bias"].items()}
        rec.update(
            case=i,
            vocab_size=V,
            reference="hf+openai_penalties" if penalties else "hf",
            tie_sensitive=bool(tie_sensitive),
            min_margin=(None if m == float("inf") else m),
            has_ties=bool(len(np.unique(logits[np.isfinite(logits)])) < np.isfinite(logits).sum()),
            has_neg_inf=bool(np.isneginf(logits).any()),
            kept=int((probs > 0).sum()),
        )
        params.append(rec)
        arrays[f"case{i}_logits"] = logits
        arrays[f"case{i}_history"] = history
        arrays[f"case{i}_probs"] = probs
        i += 1

    meta = dict(
        transformers=transformers.__version__,
        torch=torch.__version__,
        seed=SEED,
        order=["sequence_bias(logit_bias)", "repetition_penalty", "presence/frequency (openai, non-HF)",
               "no_repeat_ngram", "temperature", "top_k", "top_p", "min_p", "typical_p"],
        min_tokens_to_keep=1,
    )
    arrays["params"] = np.array(json.dumps(params))
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(out_path, **arrays)
    with open(out_path[:-4] + ".json", "w") as f:
        json.dump(dict(meta=meta, cases=params), f, indent=1)
    n_tie = sum(r["tie_sensitive"] for r in params)
    print(f"wrote {out_path}: {len(params)} cases ({N_HF} hf, {N_PF} hf+openai_penalties), "
          f"{os.path.getsize(out_path)} bytes, tie_sensitive={n_tie}, redraws={attempts - total}", file=sys.stderr)


if __name__ == "__main__":
    main()
