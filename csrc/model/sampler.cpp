// sampler.cpp: see sampler.h.
#include "sampler.h"

#include <cmath>
#include <string>

namespace nextoken {

void check_sampling_params(const SamplingParams& p, int vocab_size) {
  const LogitsParams& m = p.more;
  NT_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f,
           "temperature must be >= 0 (0 means greedy), got " + std::to_string(p.temperature));
  NT_CHECK(p.top_k >= 0, "top_k must be >= 0 (0 means no limit), got " + std::to_string(p.top_k));
  NT_CHECK(p.top_p > 0.0f && p.top_p <= 1.0f, "top_p must be in (0, 1], got " + std::to_string(p.top_p));
  NT_CHECK(m.min_p >= 0.0f && m.min_p <= 1.0f, "min_p must be in [0, 1], got " + std::to_string(m.min_p));
  NT_CHECK(m.typical_p > 0.0f && m.typical_p <= 1.0f, "typical_p must be in (0, 1], got " + std::to_string(m.typical_p));
  NT_CHECK(std::isfinite(m.repetition_penalty) && m.repetition_penalty > 0.0f,
           "repetition_penalty must be positive, got " + std::to_string(m.repetition_penalty));
  NT_CHECK(std::isfinite(m.presence_penalty) && std::isfinite(m.frequency_penalty),
           "presence_penalty and frequency_penalty must be finite");
  NT_CHECK(m.no_repeat_ngram_size >= 0, "no_repeat_ngram_size must be >= 0");
  for (const std::vector<int32_t>& word : m.bad_words_ids) {
    NT_CHECK(!word.empty(), "bad_words_ids: an empty sequence bans nothing");
    for (int32_t id : word)
      NT_CHECK(id >= 0 && id < vocab_size, "bad_words_ids: id " + std::to_string(id) + " is outside the vocabulary");
  }
  for (const auto& [id, bias] : m.logit_bias)
    NT_CHECK(id >= 0 && id < vocab_size && std::isfinite(bias),
             "logit_bias: id " + std::to_string(id) + " is outside the vocabulary or its value is not finite");
}

Sampler::Sampler(int vocab_size, const SamplingParams& params) : vocab_size_(vocab_size), params_(params) {
  check_sampling_params(params, vocab_size);
  params_.more.temperature = params.temperature > 0.0f ? params.temperature : 1.0f;
  params_.more.top_k = params.top_k;
  params_.more.top_p = params.top_p;
  if (params.temperature > 0.0f) {
    order_.resize(vocab_size);
    probs_.resize(vocab_size);
  }
  if (!plain()) work_.resize(vocab_size);
}

bool Sampler::plain() const {
  const LogitsParams& m = params_.more;
  return m.logit_bias.empty() && m.repetition_penalty == 1.0f && m.presence_penalty == 0.0f &&
         m.frequency_penalty == 0.0f && m.no_repeat_ngram_size == 0 && m.bad_words_ids.empty() && m.min_p == 0.0f && m.typical_p == 1.0f;
}

int Sampler::sample(const float* logits, const int32_t* history, int n_history, uint64_t step) {
  int token;
  if (plain()) {
    if (params_.temperature == 0.0f) {
      token = argmax(logits, vocab_size_);
    } else {
      const float u = uniform_draw(params_.seed, step);
      token = sample_top_k_top_p(logits, vocab_size_, params_.temperature, params_.top_k, params_.top_p, u,
                                 order_.data(), probs_.data());
    }
  } else {
    std::copy(logits, logits + vocab_size_, work_.begin());
    if (params_.temperature == 0.0f) {  // greedy: the processors still apply, the warpers do not
      LogitsParams processors = params_.more;
      processors.temperature = 1.0f;
      processors.top_k = 0;
      processors.top_p = 1.0f;
      processors.min_p = 0.0f;
      processors.typical_p = 1.0f;
      process_logits(work_.data(), vocab_size_, history, n_history, processors, scratch_);
      token = argmax(work_.data(), vocab_size_);
    } else {
      process_logits(work_.data(), vocab_size_, history, n_history, params_.more, scratch_);
      softmax(probs_.data(), work_.data(), vocab_size_);
      const double target = double(uniform_draw(params_.seed, step));  // inverse CDF in id order
      double cum = 0.0;
      token = vocab_size_ - 1;
      for (int i = 0; i < vocab_size_; ++i) {
        cum += probs_[i];
        if (target < cum) {
          token = i;
          break;
        }
      }
      while (probs_[token] == 0.0f && token > 0) --token;  // rounding past the end lands on a kept id
    }
  }
  return token;
}

}  // namespace nextoken
