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
  for (const std::vector<int32_t>& word : p.bad_words_ids) {  // its last id, when the history ends with the rest
    const int k = int(word.size()) - 1;
    if (k <= n && std::equal(word.begin(), word.end() - 1, history + n - k)) logits[word.back()] = -INFINITY;
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

void philox4x32_10(uint32_t out[4], const uint32_t counter[4], const uint32_t key[2]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3], k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {  // the key advances by Weyl constants between rounds
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0), hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

float uniform_draw(uint64_t seed, uint64_t step) {
  const uint32_t counter[4] = {uint32_t(step), uint32_t(step >> 32), 0, 0};
  const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
  uint32_t out[4];
  philox4x32_10(out, counter, key);
  return float(out[0] >> 8) * 0x1p-24f;  // 24 random bits: every value exact in fp32, 1 excluded
}

float log_probabilities(const float* logits, int V, int32_t token, int k, std::vector<std::pair<int32_t, float>>& top) {
  const float max_logit = logits[argmax(logits, V)];
  double sum_exp = 0.0;
  for (int i = 0; i < V; ++i) sum_exp += std::exp(double(logits[i]) - max_logit);
  const double log_total = std::log(sum_exp) + max_logit;
  top.clear();
  if (k > 0) {
    // The k largest in one pass: a small sorted list (k is a handful), ties to the smaller id.
    for (int i = 0; i < V; ++i) {
      if (int(top.size()) == k && logits[i] <= top.back().second) continue;
      auto at = std::find_if(top.begin(), top.end(), [&](const auto& e) { return logits[i] > e.second; });
      top.insert(at, {int32_t(i), logits[i]});
      if (int(top.size()) > k) top.pop_back();
    }
    for (auto& e : top) e.second = float(double(e.second) - log_total);
  }
  return float(double(logits[token]) - log_total);
}

}  // namespace nextoken
