// session.h: one sequence on a model: its KV cache and workspace over a shared Transformer, and the
// Generation that continues a prompt a token per call (prefill on the first).
//
// A Session runs one computation at a time (a mutex); callers on other threads wait their turn. Every
// call checks its input before it touches the cache, so a rejected call changes nothing.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "sampler.h"
#include "transformer.h"

namespace nextoken {

struct GenerateOptions {
  int max_new_tokens = 32;
  int min_new_tokens = 0;        // EOS is masked out until this many tokens exist
  SamplingParams sampling;
  std::vector<int32_t> eos_ids;  // generation stops after emitting one of these
};

class Session {
 public:
  Session(std::shared_ptr<const Transformer> model, int n_ctx, int n_threads);

  // tokens[0 .. T) at positions pos0 .. pos0 + T - 1. pos0 > 0 continues what earlier forward() calls
  // left in the cache (pos0 must not exceed its length); after a generation it must be 0.
  // logits: (T, vocab) when all_logits, else (vocab) for the last token.
  void forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits);

  const Transformer& model() const { return *model_; }
  int n_ctx() const { return cache_.capacity; }
  int n_threads() const { return n_threads_.load(); }
  void set_n_threads(int n);  // takes effect from the next call

 private:
  friend class Generation;
  std::shared_ptr<const Transformer> model_;
  KVCache cache_;
  Workspace workspace_;
  std::atomic<int> n_threads_{1};
  // Who the cache belongs to: 0 for forward() calls (which may continue one another), else the id of
  // the Generation that last wrote it.
  uint64_t owner_ = 0;
  uint64_t last_id_ = 0;
  std::mutex busy_;
};

// The continuation of one prompt. The session's cache holds this generation's state, so a later
// forward() or Generation on the same session ends it (next() then throws).
class Generation {
 public:
  // Checks the prompt and options; computes nothing yet.
  Generation(Session& session, std::vector<int32_t> prompt, const GenerateOptions& options);
  // The next token (the first call prefills the prompt), or -1 once an EOS id has been emitted or
  // max_new_tokens reached. The EOS token itself is returned before the end, as Hugging Face does.
  int32_t next();
  int n_generated() const { return n_generated_.load(); }

 private:
  Session& session_;
  std::vector<int32_t> prompt_;
  GenerateOptions options_;
  Sampler sampler_;
  uint64_t id_ = 0;
  std::atomic<int> n_generated_{0};
  std::atomic<bool> done_{false};
  int32_t last_token_ = -1;
};

}  // namespace nextoken
