// sampler.h: turns logits into the next token: greedy at temperature 0, otherwise a seeded draw
// after temperature, top-k and top-p (applied in that order, as Hugging Face's generate() does).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace nextoken {

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
  uint64_t seed = 0;
};

// Throws nextoken::Error for parameters outside their domain.
void check_sampling_params(const SamplingParams& p);

class Sampler {
 public:
  Sampler(int vocab_size, const SamplingParams& params);
  int sample(const float* logits);

 private:
  int vocab_size_;
  SamplingParams params_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same seed gives the same draws everywhere
  std::vector<int32_t> order_;
  std::vector<float> probs_;
};

}  // namespace nextoken
