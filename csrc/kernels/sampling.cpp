// sampling.cpp: choosing the next token from logits, CPU.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "kernels.h"

namespace nextoken {

int argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

int sample_top_k_top_p(const float* logits, int n, float temperature, int top_k, float top_p, float u,
                       int32_t* order, float* probs) {
  const float max_logit = logits[argmax(logits, n)];
  // (logit - max) / T rather than times 1 / T: a tiny T (below ~3e-39) would make 1 / T infinite.
  // Larger logit first; equal logits by index, so the order never depends on the sort's internals.
  auto before = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::iota(order, order + n, 0);

  // The candidates: order[0 .. n_cand) sorted by `before` (all n, unsorted, when neither filter is on).
  int n_cand = n;
  int n_sorted = 0;
  if (top_k > 0 && top_k < n) {
    n_cand = top_k;
    std::partial_sort(order, order + n_cand, order + n, before);
    n_sorted = n_cand;
  }
  double total = 0.0;  // softmax denominator over the candidates (after top-k, before top-p)
  if (n_sorted == n_cand) {
    for (int i = 0; i < n_cand; ++i) total += probs[i] = std::exp((logits[order[i]] - max_logit) / temperature);
  } else {
    for (int i = 0; i < n; ++i) total += probs[i] = std::exp((logits[i] - max_logit) / temperature);
  }

  if (top_p < 1.0f) {
    // Keep the head of the sorted list up to and including the token whose cumulative probability first
    // reaches top_p. Sort only as much of the vocabulary as that head needs, growing 4x at a time.
    int n_keep = 0;
    double cum = 0.0;
    for (;;) {
      if (n_sorted < n_cand) {
        const int want = std::min(n_cand, std::max(64, n_sorted * 4));
        std::partial_sort(order + n_sorted, order + want, order + n_cand, before);
        for (int i = n_sorted; i < want; ++i) probs[i] = std::exp((logits[order[i]] - max_logit) / temperature);
        n_sorted = want;
      }
      while (n_keep < n_sorted && cum < double(top_p) * total) cum += probs[n_keep++];
      if (cum >= double(top_p) * total || n_sorted == n_cand) break;
    }
    n_cand = std::max(n_keep, 1);
    total = 0.0;
    for (int i = 0; i < n_cand; ++i) total += probs[i];
  }

  // Inverse-CDF draw over the candidates in list order.
  const bool by_rank = n_sorted >= n_cand;
  const double target = double(u) * total;
  double cum = 0.0;
  for (int i = 0; i < n_cand; ++i) {
    cum += probs[i];
    if (target < cum) return by_rank ? order[i] : i;
  }
  return by_rank ? order[n_cand - 1] : n_cand - 1;
}

// ---- logits processors (kernels.h: LogitsParams), in Hugging Face generate()'s order ------------------------
namespace {

void remove_where(float* logits, int V, const std::vector<char>& remove) {
  for (int i = 0; i < V; ++i)
    if (remove[i]) logits[i] = -INFINITY;
}

// order = ids in ascending order of key (ties by id: Hugging Face's sort leaves their order unspecified).
void ascending(std::vector<int32_t>& order, const float* key, int V) {
  order.resize(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [key](int32_t a, int32_t b) { return key[a] < key[b]; });
}

}  // namespace

void softmax(float* probs, const float* logits, int V) {
  const float max_logit = logits[argmax(logits, V)];
  double total = 0.0;
  for (int i = 0; i < V; ++i) total += probs[i] = max_logit == -INFINITY ? 0.0f : std::exp(logits[i] - max_logit);
  for (int i = 0; i < V; ++i) probs[i] = total > 0.0 ? float(probs[i] / total) : 0.0f;
}

void process_logits(float* logits, int V, const int32_t* history, int n, const LogitsParams& p, LogitsScratch& s) {
  for (const auto& [id, bias] : p.logit_bias) logits[id] += bias;  // SequenceBias, single-token sequences
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::vector<int>& count = s.count;
    count.assign(V, 0);
    for (int t = 0; t < n; ++t) ++count[history[t]];
    for (int i = 0; i < V; ++i) {
      if (!count[i]) continue;
      if (p.repetition_penalty != 1.0f)  // each seen id once, however often it occurs
        logits[i] = logits[i] < 0 ? logits[i] * p.repetition_penalty : logits[i] / p.repetition_penalty;
      logits[i] -= p.presence_penalty + p.frequency_penalty * float(count[i]);
    }
  }
  const int N = p.no_repeat_ngram_size;
  if (N > 0 && n + 1 >= N) {  // an earlier n-gram starting with the last N - 1 ids bans its last id
    const int32_t* prefix = history + n - (N - 1);
    for (int i = 0; i + N <= n; ++i)
      if (std::equal(prefix, prefix + (N - 1), history + i)) logits[history[i + N - 1]] = -INFINITY;
  }
  if (p.temperature != 1.0f)
    for (int i = 0; i < V; ++i) logits[i] /= p.temperature;
  std::vector<float>& probs = s.probs;
  std::vector<char>& remove = s.remove;
  probs.resize(V);
  remove.assign(V, 0);
  if (p.top_k > 0 && p.top_k < V) {  // by value: every id tied with the k-th largest stays
    std::vector<float>& sorted = s.values;
    sorted.assign(logits, logits + V);
    std::nth_element(sorted.begin(), sorted.begin() + (p.top_k - 1), sorted.end(), std::greater<float>());
    const float kth = sorted[p.top_k - 1];
    for (int i = 0; i < V; ++i) remove[i] = logits[i] < kth;
    remove_where(logits, V, remove);
  }
  if (p.top_p < 1.0f) {  // ascending cumulative probability <= 1 - top_p is removed; the top id stays
    softmax(probs.data(), logits, V);
    std::vector<int32_t>& order = s.order;
    ascending(order, logits, V);
    float cum = 0.0f;  // float, as torch's cumsum
    for (int r = 0; r < V; ++r) {
      cum += probs[order[r]];
      remove[order[r]] = r < V - 1 && cum <= 1.0f - p.top_p;
    }
    remove_where(logits, V, remove);
  }
  if (p.min_p > 0.0f) {  // below min_p x the largest probability is removed; the top id stays
    softmax(probs.data(), logits, V);
    const int top = argmax(probs.data(), V);
    const float threshold = p.min_p * probs[top];
    for (int i = 0; i < V; ++i) remove[i] = i != top && probs[i] < threshold;
    remove_where(logits, V, remove);
  }
  if (p.typical_p < 1.0f) {  // keep the ids closest to the entropy until their mass reaches typical_p
    softmax(probs.data(), logits, V);
    const float max_logit = logits[argmax(logits, V)];
    double sum_exp = 0.0;
    for (int i = 0; i < V; ++i) sum_exp += std::exp(double(logits[i]) - max_logit);
    const double log_total = std::log(sum_exp) + max_logit;
    double entropy = 0.0;
    std::vector<float>& shifted = s.values;
    shifted.resize(V);
    for (int i = 0; i < V; ++i) {
      const double logp = double(logits[i]) - log_total;
      if (probs[i] > 0.0f) entropy -= logp * probs[i];
    }
    for (int i = 0; i < V; ++i) {
      const double logp = double(logits[i]) - log_total;
      shifted[i] = std::isfinite(logp) ? float(std::fabs(-logp - entropy)) : INFINITY;
    }
    std::vector<int32_t>& order = s.order;
    ascending(order, shifted.data(), V);
    float cum = 0.0f;
    int last = 0;  // how many sorted ids have cumulative mass below typical_p
    for (int r = 0; r < V; ++r) {
      cum += probs[order[r]];
      if (cum < p.typical_p) ++last;
    }
    const float cut = shifted[order[std::min(last, V - 1)]];
    for (int r = 0; r < V; ++r) remove[order[r]] = r > 0 && shifted[order[r]] > cut;
    remove_where(logits, V, remove);
  }
}

}  // namespace nextoken
