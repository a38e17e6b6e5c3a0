// sampling.cpp: choosing the next token from logits, CPU.
#include <algorithm>
#include <cmath>
#include <numeric>

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

}  // namespace nextoken
