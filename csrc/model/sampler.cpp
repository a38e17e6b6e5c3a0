// sampler.cpp: see sampler.h.
#include "sampler.h"

#include <cmath>
#include <string>

#include "../kernels/kernels.h"

namespace nextoken {

void check_sampling_params(const SamplingParams& p) {
  NT_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f,
           "temperature must be >= 0 (0 means greedy), got " + std::to_string(p.temperature));
  NT_CHECK(p.top_k >= 0, "top_k must be >= 0 (0 means no limit), got " + std::to_string(p.top_k));
  NT_CHECK(p.top_p > 0.0f && p.top_p <= 1.0f, "top_p must be in (0, 1], got " + std::to_string(p.top_p));
}

Sampler::Sampler(int vocab_size, const SamplingParams& params)
    : vocab_size_(vocab_size), params_(params), rng_(params.seed) {
  check_sampling_params(params);
  if (params.temperature > 0.0f) {
    order_.resize(vocab_size);
    probs_.resize(vocab_size);
  }
}

int Sampler::sample(const float* logits) {
  if (params_.temperature == 0.0f) return argmax(logits, vocab_size_);
  const float u = float(rng_() >> 40) * 0x1p-24f;  // 24 random bits: uniform in [0, 1)
  return sample_top_k_top_p(logits, vocab_size_, params_.temperature, params_.top_k, params_.top_p, u,
                            order_.data(), probs_.data());
}

}  // namespace nextoken
