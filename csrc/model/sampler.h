// sampler.h: turns logits into the next token. Hugging Face generate()'s order: the processors (logit
// bias, repetition / presence / frequency penalties, no-repeat n-grams) apply in greedy decoding too;
// then greedy at temperature 0, otherwise a seeded draw after temperature, top-k, top-p, min-p and
// typical-p (kernels.h: process_logits).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "../kernels/kernels.h"

namespace nextoken {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
  uint64_t seed = 0;
  LogitsParams more;         // the other processors (its temperature, top_k and top_p are not used)
};

// Throws nextoken::Error for parameters outside their domain (vocab_size bounds logit_bias ids).
void check_sampling_params(const SamplingParams& p, int vocab_size);

class Sampler {
 public:
  // history: the prompt; each sampled token is appended (penalties and n-grams look at both).
  Sampler(int vocab_size, const SamplingParams& params, std::vector<int32_t> history);
  int sample(const float* logits);

 private:
  bool plain() const;  // only temperature, top-k and top-p: the partial-sort path
  int vocab_size_;
  SamplingParams params_;
  std::vector<int32_t> history_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same seed gives the same draws everywhere
  std::vector<int32_t> order_;
  std::vector<float> probs_, work_;
  LogitsScratch scratch_;
};

}  // namespace nextoken
