// sampler.h: turns logits into the next token. Hugging Face generate()'s order: the processors (logit
// bias, repetition / presence / frequency penalties, no-repeat n-grams) apply in greedy decoding too;
// then greedy at temperature 0, otherwise a seeded draw after temperature, top-k, top-p, min-p and
// typical-p (kernels.h: process_logits).
#pragma once

#include <cstdint>
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

// The sampling of one sequence. Holds no state between tokens but scratch memory: a draw is a function
// of (seed, step) through a counter-based generator (kernels.h: uniform_draw), so a sequence samples
// the same tokens whatever ran beside it, and a fork may continue with a seed of its own.
class Sampler {
 public:
  Sampler(int vocab_size, const SamplingParams& params);
  // The next token after `history` (the prompt and the tokens so far, which penalties and n-grams read);
  // step: how many tokens this sequence has sampled before.
  int sample(const float* logits, const int32_t* history, int n_history, uint64_t step);
  const SamplingParams& params() const { return params_; }

 private:
  bool plain() const;  // only temperature, top-k and top-p: the partial-sort path
  int vocab_size_;
  SamplingParams params_;
  std::vector<int32_t> order_;
  std::vector<float> probs_, work_;
  LogitsScratch scratch_;
};

}  // namespace nextoken
