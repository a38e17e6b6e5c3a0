// beam_search.cpp: see beam_search.h. The names follow transformers' `_beam_search` (generation/utils.py).
#include "beam_search.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>

namespace nextoken {
namespace {

constexpr float DEAD = -1e9f;  // transformers' stand-in for "not a candidate" (added, not assigned)
constexpr int PASS_TOKENS = 512;

// Indices of the k largest values, largest first; ties to the lower index.
std::vector<int> top_indices(const std::vector<float>& values, int k) {
  std::vector<int> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  auto greater = [&](int a, int b) { return values[a] > values[b] || (values[a] == values[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), greater);
  order.resize(k);
  return order;
}

// log_softmax(logits) in place, as torch computes it in float32 (the sum in double: within an ulp).
void log_softmax(float* x, int V) {
  const float max_logit = *std::max_element(x, x + V);
  double sum = 0.0;
  for (int i = 0; i < V; ++i) sum += std::exp(double(x[i]) - max_logit);
  const double log_total = max_logit + std::log(sum);
  for (int i = 0; i < V; ++i) x[i] = float(double(x[i]) - log_total);
}

void check(const Transformer& model, int n_ctx, const std::vector<int32_t>& prompt, const BeamOptions& o) {
  const int V = model.config().vocab_size;
  NT_CHECK(o.num_beams >= 2 && o.num_beams <= PASS_TOKENS,
           "num_beams must be in [2, " + std::to_string(PASS_TOKENS) + "] for beam search, got " + std::to_string(o.num_beams));
  NT_CHECK(o.num_return_sequences >= 1 && o.num_return_sequences <= o.num_beams,
           "num_return_sequences must be in [1, num_beams = " + std::to_string(o.num_beams) + "], got " +
               std::to_string(o.num_return_sequences));
  const int64_t kept = int64_t(std::max<size_t>(2, 1 + o.eos_ids.size())) * o.num_beams;
  NT_CHECK(kept <= V, "num_beams " + std::to_string(o.num_beams) + " is too large for a vocabulary of " + std::to_string(V));
  NT_CHECK(o.max_new_tokens >= 1, "max_new_tokens must be >= 1 for beam search, got " + std::to_string(o.max_new_tokens));
  NT_CHECK(o.min_new_tokens >= 0, "min_new_tokens must be >= 0, got " + std::to_string(o.min_new_tokens));
  NT_CHECK(std::isfinite(o.length_penalty), "length_penalty must be finite");
  NT_CHECK(o.forced_bos < V, "forced_bos_token_id is outside the vocabulary");
  for (int32_t id : o.eos_ids) NT_CHECK(id >= 0 && id < V, "EOS id " + std::to_string(id) + " is outside the vocabulary");
  SamplingParams sampling;
  sampling.more = o.processors;
  check_sampling_params(sampling, V);
  NT_CHECK(!prompt.empty(), "the prompt is empty");
  NT_CHECK(int64_t(prompt.size()) + o.max_new_tokens <= n_ctx,
           "context overflow: a prompt of " + std::to_string(prompt.size()) + " tokens plus max_new_tokens = " +
               std::to_string(o.max_new_tokens) + " exceeds n_ctx = " + std::to_string(n_ctx));
  NT_CHECK(n_ctx <= model.max_positions(), "n_ctx exceeds the positions the model was set up for");
  model.check_tokens(prompt.data(), int(prompt.size()), 0, n_ctx);
  const int32_t last = 0;
  model.check_tokens(&last, 1, int(prompt.size()) + o.max_new_tokens - 1, n_ctx);
}

}  // namespace

std::vector<Hypothesis> beam_search(const Transformer& model, int n_ctx, const std::vector<int32_t>& prompt,
                                    const BeamOptions& o, int n_threads, const float* encoder_states, int n_states) {
  check(model, n_ctx, prompt, o);
  NT_CHECK(model.config().cross_attention == (encoder_states != nullptr),
           model.config().cross_attention ? "this model decodes from encoder states" : "encoder states given to a decoder-only model");
  // An encoder-decoder's beams all read the source's keys and values, computed once.
  const std::unique_ptr<KVCache> cross = encoder_states ? model.cross_cache(encoder_states, n_states, n_threads) : nullptr;
  const ModelConfig& c = model.config();
  const int V = c.vocab_size, B = o.num_beams, N = o.max_new_tokens, P = int(prompt.size());
  const int K = int(std::max<size_t>(2, 1 + o.eos_ids.size())) * B;  // candidates kept per step
  auto is_eos = [&](int32_t t) { return std::find(o.eos_ids.begin(), o.eos_ids.end(), t) != o.eos_ids.end(); };
  auto penalised = [&](float score, int length) { return score / float(std::pow(double(length), o.length_penalty)); };

  Workspace ws(c, std::min(PASS_TOKENS, std::max(B, P)));
  // Running beams: the prompt then their tokens, score, cache. All B start as the prompt; only beam 0
  // counts at the first step (the others start at DEAD), so the prompt runs once and is copied.
  std::vector<std::vector<int32_t>> run_seq(B, prompt);
  std::vector<float> run_score(B, DEAD);
  run_score[0] = 0.0f;
  std::vector<std::unique_ptr<KVCache>> caches;
  for (int b = 0; b < B; ++b) caches.push_back(std::make_unique<KVCache>(c, n_ctx));
  std::vector<float> logits(size_t(B) * V);
  model.forward(*caches[0], ws, prompt.data(), P, 0, logits.data(), false, n_threads, cross.get());
  for (int b = 1; b < B; ++b) {
    caches[b]->copy_prefix(*caches[0]);
    std::copy(logits.begin(), logits.begin() + V, logits.begin() + size_t(b) * V);
  }
  // Finished hypotheses: B slots, best first; a slot is empty (done = false) until a hypothesis takes it.
  std::vector<std::vector<int32_t>> fin_seq(B);
  std::vector<float> fin_score(B, DEAD);
  std::vector<char> fin_done(B, 0);
  bool improvable = true;  // transformers' early-stop heuristic: once false, stays false

  LogitsScratch scratch;
  std::vector<float> acc(size_t(B) * V);
  for (int t = 1; t <= N; ++t) {
    for (int b = 0; b < B; ++b) {  // log-softmax first, then the processors on the log-probabilities
      float* lp = logits.data() + size_t(b) * V;
      log_softmax(lp, V);
      process_logits(lp, V, run_seq[b].data(), int(run_seq[b].size()), o.processors, scratch);
      if (t - 1 < o.min_new_tokens)
        for (int32_t id : o.eos_ids) lp[id] = -INFINITY;
      if (t == 1 && P == 1 && o.forced_bos >= 0) {  // HF: when the decoder holds its start token only
        std::fill(lp, lp + V, -INFINITY);
        lp[o.forced_bos] = 0.0f;
      }
      if (o.renormalize) log_softmax(lp, V);
      for (int v = 0; v < V; ++v) acc[size_t(b) * V + v] = lp[v] + run_score[b];
    }
    const std::vector<int> cand = top_indices(acc, K);
    std::vector<float> running(K), finishing(K);
    std::vector<char> hit(K);
    const bool all_done_before = std::all_of(fin_done.begin(), fin_done.end(), [](char d) { return d; });
    for (int j = 0; j < K; ++j) {
      const float s = acc[cand[j]];
      const int32_t token = cand[j] % V;
      hit[j] = is_eos(token) || t == N;
      running[j] = s + (hit[j] ? DEAD : 0.0f);
      float f = penalised(s, t);  // the generated length, EOS included, the prompt not
      if (o.early_stopping == EarlyStopping::Stop && all_done_before) f += DEAD;
      if (!improvable) f += DEAD;
      if (!(hit[j] && j < B)) f += DEAD;  // only EOS among the top B finishes
      finishing[j] = f;
    }
    // The finished slots and the candidates compete for the B slots (old slots first on ties).
    std::vector<float> merged(fin_score);
    merged.insert(merged.end(), finishing.begin(), finishing.end());
    const std::vector<int> keep = top_indices(merged, B);
    std::vector<std::vector<int32_t>> new_fin_seq(B);
    std::vector<float> new_fin_score(B);
    std::vector<char> new_fin_done(B);
    for (int i = 0; i < B; ++i) {
      const int m = keep[i];
      new_fin_score[i] = merged[m];
      if (m < B) {
        new_fin_seq[i] = fin_seq[m];
        new_fin_done[i] = fin_done[m];
      } else {
        const int j = m - B, beam = cand[j] / V;
        new_fin_seq[i].assign(run_seq[beam].begin() + P, run_seq[beam].end());
        new_fin_seq[i].push_back(cand[j] % V);
        new_fin_done[i] = hit[j] && j < B;
      }
    }
    fin_seq.swap(new_fin_seq);
    fin_score.swap(new_fin_score);
    fin_done.swap(new_fin_done);
    // The next running beams: the best B candidates that did not finish.
    const std::vector<int> sel = top_indices(running, B);
    std::vector<std::vector<int32_t>> next_seq(B);
    std::vector<float> next_score(B);
    std::vector<int> parent(B);
    for (int i = 0; i < B; ++i) {
      const int j = sel[i];
      parent[i] = cand[j] / V;
      next_seq[i] = run_seq[parent[i]];
      next_seq[i].push_back(cand[j] % V);
      next_score[i] = running[j];
    }
    run_seq.swap(next_seq);
    run_score.swap(next_score);
    // Stop? (transformers: the heuristic, then early_stopping=True with every slot finished, then length.)
    const int lh = o.early_stopping == EarlyStopping::Never && o.length_penalty > 0 ? N : t;
    const float best = penalised(run_score[0], lh);
    const bool all_done = std::all_of(fin_done.begin(), fin_done.end(), [](char d) { return d; });
    const float worst = *std::min_element(fin_score.begin(), fin_score.end());
    improvable = improvable && (!all_done || best > worst);
    const bool all_hit = std::all_of(hit.begin(), hit.end(), [](char h) { return h; });
    if (!improvable || (o.early_stopping == EarlyStopping::Stop && all_done) || all_hit) break;
    // Each new beam continues its parent's cache: a parent's first child takes it over, the others copy it.
    std::vector<std::unique_ptr<KVCache>> next_caches(B);
    std::vector<char> taken(B, 0);
    for (int i = 0; i < B; ++i)
      if (std::count(parent.begin(), parent.begin() + i, parent[i]) > 0) {
        next_caches[i] = std::make_unique<KVCache>(c, n_ctx);
        next_caches[i]->copy_prefix(*caches[parent[i]]);
      }
    for (int i = 0; i < B; ++i)
      if (!next_caches[i]) next_caches[i] = std::move(caches[parent[i]]);
    caches.swap(next_caches);
    std::vector<ForwardChunk> chunks(B);
    for (int b = 0; b < B; ++b)
      chunks[b] = ForwardChunk{caches[b].get(), &run_seq[b].back(), 1, logits.data() + size_t(b) * V, false, cross.get()};
    model.forward_batch(chunks.data(), B, ws, n_threads);
  }
  std::vector<Hypothesis> out;
  for (int i = 0; i < o.num_return_sequences; ++i) out.push_back(Hypothesis{fin_seq[i], fin_score[i]});
  return out;
}

}  // namespace nextoken
