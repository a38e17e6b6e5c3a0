#!/usr/bin/env python3
"""Generate tests/fixtures/beams_reference.json: Hugging Face beam search on the tiny checkpoints.

Reference environment: transformers 5.24.0 + torch 2.13 (CPU), e.g.
    /work/refenv/bin/python tests/make_reference_beams.py

Run by hand, never in CI (it needs torch). Each case loads tests/fixtures/hf/<model>/ in float32 with eager
attention and calls

    model.generate(input_ids, num_beams=B, num_return_sequences=R, max_new_tokens=16, do_sample=False,
                   length_penalty=LP, early_stopping=ES, eos_token_id=EOS, pad_token_id=PAD,
                   [repetition_penalty=..., no_repeat_ngram_size=...],
                   return_dict_in_generate=True, output_scores=True)

(GenerationMixin._beam_search, transformers/generation/utils.py). Every generation option that could add a
processor is passed explicitly, so the checkpoints' generation_config.json (bos/eos/pad/do_sample only)
adds nothing; sampling warpers are never built with do_sample=False.

The random tiny models almost never emit their configured EOS (id 1), so for most cases EOS is chosen
here: a probe run (same case, configured EOS) lists the tokens the beams actually consider (top 3 of each
running beam's processed log-probs at steps 2..13); these are tried, in a seeded order, as EOS (or as a
pair of EOS ids) until the case shows what it is meant to show: "early" = some returned beam ends with EOS
before max_new_tokens, "mixed" = early and the returned beams have different lengths. Cases with
eos_mode "config" keep the checkpoint's EOS and usually run every beam to max_new_tokens.

Every case is replayed here by a plain re-implementation of the algorithm from the per-step processed
log-probs HF returns (`scores`); the script fails unless the replay reproduces HF's sequences and
sequences_scores bit for bit, so the fixture also pins the algorithm, not only its result. The replay
measures min_margin, the smallest gap between two scores whose order decided something (see replay());
a candidate EOS is only accepted when min_margin >= MIN_MARGIN and the case gives the same result with the
model run in float64 (stable_fp64), so an engine whose logits differ from torch's by ~1e-6 should
reproduce the tokens exactly.

JSON layout:
    meta   transformers / torch versions, seed, max_new_tokens, notes
    cases  list of dicts:
        model, vocab_size, prompt (ids), params (every argument passed to generate besides the fixed ones;
        eos_token_id is an int or a list of ints), eos_mode, target,
        sequences        list of R lists: NEW token ids only, in HF's order (best sequences_score first).
                         HF pads beams shorter than the longest returned one with pad_token_id; the padding
                         is cut using the beam's length from HF's `beam_indices` (number of entries != -1),
                         not by stripping pad ids, since a real token may equal the pad id.
        lengths          generated length of each returned beam (including the EOS token when it ended
                         on one); the length used by the length penalty
        sequences_scores float32 values as returned (= sum of processed log-probs / length ** LP)
        sum_logprobs     float32 running sum of processed log-probs of each returned beam (from the replay)
        ended_with_eos   per beam: last token is an EOS id and length < max_new_tokens
        early_eos        any(ended_with_eos)
        mixed_lengths    returned beams have different lengths
        steps            number of decoding iterations HF ran (forward passes) before stopping
        min_margin       see above (float, may be large when nothing was close)
        stable_fp64      same sequences when the model itself runs in float64
"""
import json
import math
import os
import re
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

SEED = 20240923
MAX_NEW = 16
MIN_MARGIN = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
HF_DIR = os.path.join(HERE, "fixtures", "hf")
NEG = np.float32(-1.0e9)

# (model, B, R, length_penalty, early_stopping, eos_mode, target, extra generate kwargs)
# eos_mode: "config" = checkpoint's EOS, "one" = one chosen id, "two" = a list of two chosen ids.
CASES = [
    ("llama", 4, 4, 1.0, False, "one", "mixed", {}),  # the main case: B=4, R=4, defaults
    ("llama", 2, 1, 1.0, True, "one", "early", {}),
    ("llama", 3, 2, 0.0, "never", "two", "early", {}),
    ("llama", 4, 4, 1.0, False, "config", None, {}),
    ("qwen2", 4, 4, 1.0, "never", "one", "mixed", {}),
    ("qwen2", 3, 3, -0.5, False, "one", "early", {}),
    ("qwen2", 2, 2, 1.0, False, "config", None, {"repetition_penalty": 1.3}),
    ("qwen2", 4, 2, 0.0, True, "two", "mixed", {}),
    ("gpt2", 4, 4, 1.0, True, "one", "mixed", {}),
    ("gpt2", 4, 4, 2.0, False, "one", "early", {}),
    ("gpt2", 2, 2, -0.5, "never", "one", "early", {}),
    ("gpt2", 4, 3, 1.0, False, "one", "early", {"no_repeat_ngram_size": 2}),
    ("gemma3", 4, 4, 1.0, False, "one", "mixed", {}),
    ("gemma3", 3, 3, 0.0, False, "one", "mixed", {}),
    ("gemma3", 3, 1, 2.0, True, "one", None, {}),  # LP 2 favours long beams: EOS ones usually lose
    ("gemma3", 4, 4, -0.5, "never", "two", "early", {"repetition_penalty": 1.3}),
    ("mistral", 3, 2, 1.0, True, "one", "early", {}),
    ("mistral", 4, 4, 2.0, False, "config", None, {"no_repeat_ngram_size": 2}),
]


def topk_order(values, k):
    """Indices of the k largest values, largest first, exact ties -> lower index. torch.topk on CPU does NOT
    promise that order for ties (it often differs), which is why cases must have min_margin > 0: then no tie
    decides anything and any tie rule reproduces HF."""
    return sorted(range(len(values)), key=lambda i: (-float(values[i]), i))[:k]


def pen(length, lp):
    """length ** length_penalty: Python int ** float (double), then used against a float32 tensor."""
    return np.float32(float(length) ** lp)


def replay(scores, eos_ids, B, R, lp, es, max_new):
    """Re-run HF's beam search (batch 1) from the processed log-probs of each step.

    scores[t] is [B, V] float32: log_softmax(logits) after the logits processors, one row per running beam
    in HF's running order. Returns (sequences, scores, lengths, sums, steps, min_margin).
    min_margin: smallest gap among (a) adjacent values of the sorted accumulated candidates (top K + 1),
    (b) adjacent values of the sorted merged finished scores (top B + 1, real ones only) and (c) the early
    stop comparison best_running vs worst_finished once all B finished slots are real.
    """
    V = scores[0].shape[1]
    K = max(2, 1 + len(eos_ids)) * B
    run_score = np.full(B, NEG, np.float32)
    run_score[0] = 0.0  # only beam 0 is live at the first step (all B rows hold the same prompt)
    run_seq = [[] for _ in range(B)]
    run_sum = [np.float32(0.0)] * B
    # finished slots: score, tokens, sum of log-probs, finished flag; empty slots score -1e9
    fin = [(NEG, None, None, False) for _ in range(B)]
    heur_unsat = True
    margin = float("inf")
    steps = 0
    for t in range(max_new):
        if t >= len(scores):
            raise AssertionError("HF stopped before the replay")
        steps += 1
        logp = np.asarray(scores[t], np.float32)
        acc = (logp + run_score[:, None]).astype(np.float32).reshape(-1)  # float32 add, as torch
        order = topk_order(acc, K + 1)
        vals = [float(acc[i]) for i in order]
        # a step whose candidates are all forced (-inf, dead beams: mBART's forced BOS) gives no margin
        margin = min(margin, min((vals[i] - vals[i + 1] for i in range(K) if vals[i + 1] > -1e8), default=math.inf))
        order = order[:K]
        gen_len = t + 1
        cands = []
        for pos, i in enumerate(order):
            beam, tok = divmod(i, V)
            hit = tok in eos_ids or gen_len >= max_new  # EosTokenCriteria / MaxLengthCriteria
            s = acc[i]
            cands.append(dict(pos=pos, beam=beam, tok=tok, score=s, hit=hit,
                              seq=run_seq[beam] + [tok], sum=np.float32(run_sum[beam] + logp[beam, tok])))
        # running beams for the next step: best B candidates after pushing finished ones down by 1e9
        run_vals = [np.float32(c["score"] + (NEG if c["hit"] else np.float32(0))) for c in cands]
        nxt = topk_order(run_vals, B)
        # finished: only the first B candidates (top_num_beam_mask) that hit a stopping criterion
        full = all(f[3] for f in fin) and es is True
        new = []
        for c in cands:
            s = np.float32(c["score"] / pen(gen_len, lp))
            if full:
                s = np.float32(s + NEG)
            if not heur_unsat:
                s = np.float32(s + NEG)
            did = c["hit"] and c["pos"] < B
            if not did:
                s = np.float32(s + NEG)
            new.append((s, c["seq"], c["sum"], did))
        merged = fin + new
        mo = topk_order([m[0] for m in merged], B + 1)
        mv = [float(merged[i][0]) for i in mo]
        real = [v for v in mv if v > -1e8]
        if len(real) >= 2:
            margin = min(margin, min(real[i] - real[i + 1] for i in range(len(real) - 1)))
        fin = [merged[i] for i in mo[:B]]
        run_score = np.array([run_vals[i] for i in nxt], np.float32)
        run_seq = [cands[i]["seq"] for i in nxt]
        run_sum = [cands[i]["sum"] for i in nxt]
        # early-stop heuristic (sticky), with the running scores after this step and cur_len = prompt + gen_len
        hyp_len = max_new if (es == "never" and lp > 0.0) else gen_len
        best = np.float32(run_score[0] / pen(hyp_len, lp))
        worst_min = min(f[0] for f in fin)
        worst = [worst_min if f[3] else NEG for f in fin]
        if all(f[3] for f in fin):
            margin = min(margin, abs(float(best) - float(worst_min)))
        heur_unsat = heur_unsat and any(best > w for w in worst)
        all_hit = all(c["hit"] for c in cands)
        if not (heur_unsat and not (all(f[3] for f in fin) and es is True) and not all_hit):
            break
    out = fin[:R]
    return ([f[1] for f in out], [float(f[0]) for f in out], [len(f[1]) for f in out],
            [float(f[2]) for f in out], steps, margin)


def run(model, prompt, B, R, lp, es, eos, pad, extra):
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), num_beams=B, num_return_sequences=R,
                             max_new_tokens=MAX_NEW, do_sample=False, length_penalty=lp, early_stopping=es,
                             eos_token_id=eos, pad_token_id=pad, top_k=None, top_p=None, temperature=None,
                             return_dict_in_generate=True, output_scores=True, **extra)
    P = len(prompt)
    seqs, lengths = [], []
    for r in range(R):
        n = int((out.beam_indices[r] != -1).sum())
        row = out.sequences[r, P:].tolist()
        assert all(x == pad for x in row[n:]), "HF pads beams shorter than the longest with pad_token_id"
        seqs.append(row[:n])
        lengths.append(n)
    return dict(sequences=seqs, lengths=lengths, sequences_scores=[float(x) for x in out.sequences_scores],
                scores=[s.float().numpy() for s in out.scores])


def load(name, dtype=torch.float32):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(HF_DIR, name), dtype=dtype, attn_implementation="eager")
    m.eval()
    return m


def try_case(models, name, prompt, B, R, lp, es, eos, pad, extra):
    eos_ids = [eos] if isinstance(eos, int) else list(eos)
    res = run(models[name], prompt, B, R, lp, es, eos, pad, extra)
    seqs, sc, lens, sums, steps, margin = replay(res["scores"], eos_ids, B, R, lp, es, MAX_NEW)
    assert steps == len(res["scores"]), (steps, len(res["scores"]))
    assert seqs == res["sequences"], (seqs, res["sequences"])
    assert sc == res["sequences_scores"], (sc, res["sequences_scores"])  # bitwise (float32 -> float)
    ended = [len(s) < MAX_NEW and s[-1] in eos_ids for s in seqs]
    return dict(sequences=seqs, lengths=lens, sequences_scores=sc, sum_logprobs=sums, ended_with_eos=ended,
                early_eos=any(ended), mixed_lengths=len(set(lens)) > 1, steps=steps, min_margin=margin)


def stable_fp64(models, name, prompt, B, R, lp, es, eos, pad, extra, seqs):
    return run(models[name + "@fp64"], prompt, B, R, lp, es, eos, pad, extra)["sequences"] == seqs


def eos_candidates(scores, rng):
    """Tokens the beams consider: top 3 of each running beam's processed log-probs at steps 2..13."""
    c = []
    for t in range(1, min(13, len(scores))):
        for row in scores[t]:
            for tok in np.argsort(-row, kind="stable")[:3]:
                if int(tok) not in c:
                    c.append(int(tok))
    rng.shuffle(c)
    return c


def main():
    out_path = os.path.join(HERE, "fixtures", "beams_reference.json")
    rng = np.random.default_rng(SEED)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models; results do not depend on it
    names = sorted({c[0] for c in CASES})
    models = {}
    for n in names:
        models[n] = load(n)
        models[n + "@fp64"] = load(n, torch.float64)

    cases = []
    for ci, (name, B, R, lp, es, eos_mode, target, extra) in enumerate(CASES):
        cfg = models[name].generation_config
        V = models[name].config.vocab_size
        pad = int(cfg.pad_token_id)
        for attempt in range(20):  # a new prompt when no EOS choice gives a clear-cut case
            prompt = rng.integers(3, V, int(rng.integers(3, 10))).tolist()
            base_eos = cfg.eos_token_id  # int or list, as in generation_config.json
            if eos_mode == "config":
                choices = [base_eos]
            else:
                probe = run(models[name], prompt, B, R, lp, es, base_eos, pad, extra)
                cand = eos_candidates(probe["scores"], rng)
                if eos_mode == "one":
                    choices = cand[:40]
                else:
                    choices = [[cand[i], cand[i + 1]] for i in range(0, min(len(cand) - 1, 40), 2)]
            found = None
            for eos in choices:
                rec = try_case(models, name, prompt, B, R, lp, es, eos, pad, extra)
                ok = rec["min_margin"] >= MIN_MARGIN
                if target == "early":
                    ok = ok and rec["early_eos"]
                elif target == "mixed":
                    ok = ok and rec["early_eos"] and rec["mixed_lengths"]
                # the float64 run last: it costs a generate() call
                rec["stable_fp64"] = ok and stable_fp64(models, name, prompt, B, R, lp, es, eos, pad, extra,
                                                        rec["sequences"])
                if rec["stable_fp64"]:
                    found = (eos, rec)
                    break
            if found:
                break
        else:
            raise SystemExit(f"case {ci}: no EOS choice met target {target}")
        eos, rec = found
        params = dict(num_beams=B, num_return_sequences=R, max_new_tokens=MAX_NEW, do_sample=False,
                      length_penalty=lp, early_stopping=es, eos_token_id=eos, pad_token_id=pad,
                      repetition_penalty=extra.get("repetition_penalty", 1.0),
                      no_repeat_ngram_size=extra.get("no_repeat_ngram_size", 0))
        case = dict(case=ci, model=name, vocab_size=V, prompt=prompt, params=params, eos_mode=eos_mode,
                    target=target, prompt_redraws=attempt)
        case.update(rec)
        cases.append(case)
        print(f"case {ci:2d} {name:7s} B={B} R={R} lp={lp:4} es={es!s:5} eos={eos} lens={rec['lengths']} "
              f"steps={rec['steps']} early={rec['early_eos']} margin={rec['min_margin']:.2e}", file=sys.stderr)

    meta = dict(
        transformers=transformers.__version__,
        torch=torch.__version__,
        seed=SEED,
        max_new_tokens=MAX_NEW,
        min_margin_required=MIN_MARGIN,
        dtype="float32 model, eager attention, CPU",
        notes=("sequences hold new tokens only, cut to `lengths` (HF pads shorter beams with pad_token_id); "
               "sequences_scores are HF's float32 values; repetition_penalty 1.0 / no_repeat_ngram_size 0 "
               "mean the processor was not passed"),
    )
    text = json.dumps(dict(meta=meta, cases=cases), indent=1)
    # one line per innermost list (ids, scores) instead of one line per number
    text = re.sub(r"\[[^\[\]{}]*\]", lambda m: " ".join(m.group(0).split()), text)
    with open(out_path, "w") as f:
        f.write(text + "\n")
    n_early = sum(c["early_eos"] for c in cases)
    n_mixed = sum(c["mixed_lengths"] for c in cases)
    print(f"wrote {out_path}: {len(cases)} cases, early_eos={n_early}, mixed_lengths={n_mixed}, "
          f"{os.path.getsize(out_path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
