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
    4. NoBadWordsLogitsProcessor        (bad_words_ids; built with eos_token_id=None here, see below)
    --- "warpers" (only with do_sample=True), min_tokens_to_keep = 1 ---
    5. TemperatureLogitsWarper
    6. TopKLogitsWarper
    7. TopPLogitsWarper
    8. MinPLogitsWarper
    9. TypicalLogitsWarper

NoBadWordsLogitsProcessor (a SequenceBiasLogitsProcessor with bias -inf on every sequence): a single-token
bad word [t] always sets scores[t] = -inf; a longer one [p1..pk, t] sets scores[t] = -inf only when the
last k ids of input_ids (the whole sequence, prompt included, so it already applies to the first generated
token) equal p1..pk, and is ignored when k > len(input_ids). Nothing else is touched (no renormalisation,
bans are additive -inf so they commute with each other). In generate() single-token bad words equal to an
EOS id are dropped first; these cases have no EOS. In transformers 5.24 an empty bad_words_ids list, a
negative id or an id >= vocab_size raise ValueError, while an empty inner list [] is silently ignored.

Each case stores probs = softmax(processed scores) in float32: the distribution
sampling draws from.

npz layout:
    params                JSON string: list of one dict per case (all keys present, neutral values when unused)
    case{i}_logits        float32 [V]
    case{i}_history       int64   [L]  (previous ids, oldest first; input_ids = [history])
    case{i}_probs         float32 [V]

Cases 0..69 are the original ones (RNG stream SEED, unchanged); cases 70..79 (RNG stream SEED_BAD) use
bad_words_ids. Every case has bad_words_ids ([] when unused) and bad_words_banned (the ids the bad-words
rule bans for this history, sorted, computed independently in Python and checked against transformers).

Per-case extra keys in params:
    reference       "hf" (transformers only, presence/frequency = 0) or
                    "hf+openai_penalties" (presence/frequency computed in torch here:
                    logits[i] -= presence * (count_i > 0) + frequency * count_i, counts over the whole history)
    tie_sensitive   True if the result changed when the vocabulary was permuted, i.e. it depends on how
                    torch.sort orders exactly tied values (top_p boundary ties). Tests should skip or
                    only check loosely such cases.
    bad_words_ids   list of lists of token ids ([] = no NoBadWordsLogitsProcessor)
    bad_words_banned  sorted ids banned by bad_words_ids given the history (informative; derived)
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
    NoBadWordsLogitsProcessor,
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
SEED_BAD = 20240612  # separate stream for the bad_words_ids cases appended after the original 70

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
    bad_words_ids=[],
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
    if p["bad_words_ids"]:  # generate() adds it whenever bad_words_ids is not None ([] would raise there)
        procs.append(NoBadWordsLogitsProcessor([[int(t) for t in w] for w in p["bad_words_ids"]]))
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
    q["bad_words_ids"] = [[int(inv[int(t)]) for t in w] for w in p["bad_words_ids"]]
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


def neutral():
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in NEUTRAL.items()}


def random_params(rng, V, penalties):
    p = neutral()
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
        p = neutral()
        p[k] = v
        out.append(p)
    # everything at once
    p = dict(neutral(), temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.9, repetition_penalty=1.3,
             no_repeat_ngram_size=2, logit_bias={"2": 3.0, "5": -1.5})
    out.append(p)
    return out


def banned_by_bad_words(bad_words_ids, history):
    """Independent statement of NoBadWordsLogitsProcessor's rule: [t] always bans t; [p1..pk, t] bans t when
    the last k ids of the history are p1..pk (never when k > len(history))."""
    h = [int(t) for t in history]
    out = set()
    for w in bad_words_ids:
        k = len(w) - 1
        if k <= len(h) and h[len(h) - k:] == [int(t) for t in w[:-1]]:
            out.add(int(w[-1]))
    return sorted(out)


def check_bad_words(p, logits, history, banned):
    """transformers' NoBadWordsLogitsProcessor alone == logits with exactly `banned` set to -inf."""
    if not p["bad_words_ids"]:
        assert not banned
        return
    proc = NoBadWordsLogitsProcessor([[int(t) for t in w] for w in p["bad_words_ids"]])
    input_ids = torch.tensor(np.asarray(history, dtype=np.int64)[None, :])
    out = proc(input_ids, torch.tensor(logits[None, :].copy(), dtype=torch.float32))[0].numpy()
    want = logits.copy()
    want[banned] = -np.inf
    assert np.array_equal(out, want), (p["bad_words_ids"], history, banned)


def record(i, V, p, logits, history, reference):
    """Reference probabilities and metadata of one case, or None when HF gives NaN (everything banned)."""
    probs, m = apply(p, logits, history, with_margin=True)
    if not np.all(np.isfinite(probs)):  # everything banned -> NaN in HF; draw again
        return None
    banned = banned_by_bad_words(p["bad_words_ids"], history)
    check_bad_words(p, logits, history, banned)
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
    rec["bad_words_ids"] = [[int(t) for t in w] for w in p["bad_words_ids"]]
    rec.update(
        case=i,
        vocab_size=V,
        reference=reference,
        tie_sensitive=bool(tie_sensitive),
        min_margin=(None if m == float("inf") else m),
        has_ties=bool(len(np.unique(logits[np.isfinite(logits)])) < np.isfinite(logits).sum()),
        has_neg_inf=bool(np.isneginf(logits).any()),
        kept=int((probs > 0).sum()),
        bad_words_banned=banned,
    )
    return rec, probs


# The bad_words_ids cases: (vocab size, parameters besides bad words, history length, history id range
# (None = as in the random cases), kinds of bad words, reference). Kinds:
#   "single"        [t], t one of the 5 largest finite logits (each kind below picks a different t, when it can)
#   ("match", K)    history[-(K-1):] + [t]             (prefix matches the end of the history -> t banned)
#   ("nomatch", K)  end of history with one id changed  (or random if the history is too short) + [t]
#   ("earlier", K)  a (K-1)-gram from inside the history that is not its end, + [t]  (not banned)
#   "toolong"       [x] + history + [t]: its suffix matches but it is longer than the history (ignored)
#   "whole"         history + [t]                        (prefix length == history length -> banned)
#   "shared_last"   [history[-1], t] and [y, t], y != history[-1]: same last token, one matching
#   "dup"           the previous bad word once more
BAD_CASES = [
    (50, {}, 12, None, ["single", "single", ("match", 2)], "hf"),
    (50, {}, 10, 6, [("match", 2), ("match", 3), ("nomatch", 2), ("earlier", 2)], "hf"),
    (7, dict(temperature=0.7), 8, None, ["single", ("match", 2), ("nomatch", 3)], "hf"),
    (1000, dict(temperature=0.7, top_p=0.9), 20, None,
     ["single", "single", ("match", 2), ("match", 3), ("nomatch", 3)], "hf"),
    (50, dict(temperature=1.8, top_k=40, top_p=0.5), 15, None, [("match", 2), ("nomatch", 2), "toolong"], "hf"),
    (50, dict(repetition_penalty=1.3, no_repeat_ngram_size=2), 20, 6, ["single", ("match", 2), "shared_last"], "hf"),
    (50, dict(temperature=0.7, min_p=0.05, typical_p=0.9), 6, None, ["whole", "single"], "hf"),
    (1000, dict(temperature=0.3, top_p=0.9, min_p=0.05), 0, None, ["single", "toolong", ("nomatch", 3)], "hf"),
    (50, dict(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, typical_p=0.9, repetition_penalty=1.3,
              no_repeat_ngram_size=2, presence_penalty=0.5, frequency_penalty=-0.3), 25, 6,
     ["single", ("match", 2), ("match", 4), ("earlier", 3), "dup"], "hf+openai_penalties"),
    (7, dict(temperature=1.8, top_k=3), 5, None, ["single", ("match", 2), "dup", ("nomatch", 2)], "hf"),
]


def make_bad_words(rng, V, logits, history, kinds):
    fin = np.flatnonzero(np.isfinite(logits))
    order = [int(t) for t in fin[np.argsort(-logits[fin], kind="stable")]]
    h = [int(t) for t in history]
    L = len(h)
    used = set()

    def pick():  # one of the 5 largest finite logits not yet the last token of another bad word
        top = [t for t in order if t not in used][:5] or order[:5]
        t = top[int(rng.integers(0, len(top)))]
        used.add(t)
        return t

    def other(x):  # an id != x
        return int((x + 1 + int(rng.integers(0, V - 1))) % V)

    def nomatch(k):
        if k > L:
            return [int(t) for t in rng.integers(0, V, k)]
        pre = h[L - k:]
        j = int(rng.integers(0, k))
        pre[j] = other(pre[j])
        return pre

    out = []
    for kind in kinds:
        if kind == "single":
            out.append([pick()])
        elif kind == "toolong":
            out.append([int(rng.integers(0, V))] + h + [pick()])
        elif kind == "whole":
            out.append(h + [pick()])
        elif kind == "shared_last":
            t = pick()
            out += [[h[-1], t], [other(h[-1]), t]]
        elif kind == "dup":
            out.append(list(out[-1]))
        else:
            what, K = kind
            k = K - 1
            if what == "match":
                out.append(h[L - k:] + [pick()])
            elif what == "nomatch":
                out.append(nomatch(k) + [pick()])
            elif what == "earlier":
                starts = [j for j in range(0, L - k) if h[j:j + k] != h[L - k:]]
                out.append((h[starts[int(rng.integers(0, len(starts)))]:][:k] if starts else nomatch(k)) + [pick()])
    for w in out:
        assert w and all(0 <= t < V for t in w)
    return out


def bad_word_cases(first):
    """Cases first.. with bad_words_ids, drawn from their own stream so the original cases stay bitwise equal."""
    rng = np.random.default_rng(SEED_BAD)
    out = []
    attempts = 0
    for n, (V, over, L, hi, kinds, reference) in enumerate(BAD_CASES):
        i = first + n
        while True:
            attempts += 1
            p = neutral()
            p.update(over)
            history = rng.integers(0, hi or (V if rng.random() < 0.5 else min(V, 6)), L).astype(np.int64)
            logits = make_logits(rng, V)
            p["bad_words_ids"] = make_bad_words(rng, V, logits, history, kinds)
            if n == 5:  # a positive logit bias on a banned token stays banned, plus an ordinary one
                p["logit_bias"] = {str(p["bad_words_ids"][0][-1]): 4.0, str(int(rng.integers(0, V))): -1.5}
            got = record(i, V, p, logits, history, reference)
            if got is None:
                continue
            # the bans must change the distribution, otherwise the case tests nothing
            without, _ = apply(dict(p, bad_words_ids=[]), logits, history)
            if np.array_equal(without, got[1]):
                continue
            out.append((i, history, logits) + got)
            break
    return out, attempts - len(BAD_CASES)


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

        got = record(i, V, p, logits, history, "hf+openai_penalties" if penalties else "hf")
        if got is None:
            continue
        params.append(got[0])
        arrays[f"case{i}_logits"] = logits
        arrays[f"case{i}_history"] = history
        arrays[f"case{i}_probs"] = got[1]
        i += 1

    bad, bad_redraws = bad_word_cases(total)
    for i, history, logits, rec, probs in bad:
        params.append(rec)
        arrays[f"case{i}_logits"] = logits
        arrays[f"case{i}_history"] = history
        arrays[f"case{i}_probs"] = probs

    meta = dict(
        transformers=transformers.__version__,
        torch=torch.__version__,
        seed=SEED,
        seed_bad_words=SEED_BAD,
        order=["sequence_bias(logit_bias)", "repetition_penalty", "presence/frequency (openai, non-HF)",
               "no_repeat_ngram", "bad_words_ids", "temperature", "top_k", "top_p", "min_p", "typical_p"],
        min_tokens_to_keep=1,
    )
    arrays["params"] = np.array(json.dumps(params))
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez_compressed(out_path, **arrays)
    with open(out_path[:-4] + ".json", "w") as f:
        json.dump(dict(meta=meta, cases=params), f, indent=1)
    n_tie = sum(r["tie_sensitive"] for r in params)
    print(f"wrote {out_path}: {len(params)} cases ({N_HF} hf, {N_PF} hf+openai_penalties, {len(bad)} bad_words_ids), "
          f"{os.path.getsize(out_path)} bytes, tie_sensitive={n_tie}, "
          f"redraws={attempts - total}+{bad_redraws}", file=sys.stderr)


if __name__ == "__main__":
    main()
