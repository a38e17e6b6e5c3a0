// session.cpp: see session.h.
#include "session.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace nextoken {
namespace {

constexpr int PREFILL_BATCH = 512;  // tokens per prefill chunk: bounds the workspace

int checked_ctx(int n_ctx) {
  NT_CHECK(n_ctx > 0, "n_ctx must be positive, got " + std::to_string(n_ctx));
  return n_ctx;
}

}  // namespace

Session::Session(std::shared_ptr<const Transformer> model, int n_ctx, int n_threads)
    : model_(std::move(model)),
      cache_(model_->config(), checked_ctx(n_ctx)),
      workspace_(model_->config(), std::min(n_ctx, PREFILL_BATCH)) {
  NT_CHECK(n_ctx <= model_->max_positions(), "n_ctx " + std::to_string(n_ctx) + " exceeds the positions the model was set up for (" +
                                                 std::to_string(model_->max_positions()) + ")");
  set_n_threads(n_threads);
}

void Session::set_n_threads(int n) {
  NT_CHECK(n > 0, "n_threads must be positive, got " + std::to_string(n));
  n_threads_.store(n);
}

void Session::forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits) {
  std::lock_guard<std::mutex> lock(busy_);
  model_->check_tokens(tokens, T, pos0, cache_.capacity);
  if (pos0 > 0) {
    NT_CHECK(owner_ == 0, "start_pos > 0 continues the sequence of earlier forward() calls, but a generation has "
                          "used the cache since: start again from start_pos = 0");
    NT_CHECK(pos0 <= cache_.length, "start_pos " + std::to_string(pos0) + " skips positions: the cache holds " +
                                        std::to_string(cache_.length) + " tokens from earlier forward() calls");
  }
  owner_ = 0;
  model_->forward(cache_, workspace_, tokens, T, pos0, logits, all_logits, n_threads());
}

Generation::Generation(Session& session, std::vector<int32_t> prompt, const GenerateOptions& options)
    : session_(session), prompt_(std::move(prompt)), options_(options),
      sampler_(session.model().config().vocab_size, options.sampling, prompt_) {
  const int n_prompt = int(prompt_.size()), vocab = session.model().config().vocab_size;
  NT_CHECK(n_prompt > 0, "the prompt is empty");
  NT_CHECK(options.max_new_tokens >= 0, "max_new_tokens must be >= 0, got " + std::to_string(options.max_new_tokens));
  NT_CHECK(options.min_new_tokens >= 0, "min_new_tokens must be >= 0, got " + std::to_string(options.min_new_tokens));
  NT_CHECK(int64_t(n_prompt) + options.max_new_tokens <= session.n_ctx(),
           "context overflow: a prompt of " + std::to_string(n_prompt) + " tokens plus max_new_tokens = " +
               std::to_string(options.max_new_tokens) + " exceeds n_ctx = " + std::to_string(session.n_ctx()));
  for (int32_t id : options.eos_ids)
    NT_CHECK(id >= 0 && id < vocab, "EOS id " + std::to_string(id) + " is outside the vocabulary");
  session.model().check_tokens(prompt_.data(), n_prompt, 0, session.n_ctx());
  if (options.max_new_tokens > 0) {
    // Learned positions end somewhere: the generated tokens must have positions too.
    const int32_t last = 0;
    session.model().check_tokens(&last, 1, n_prompt + options.max_new_tokens - 1, session.n_ctx());
  }
  done_ = options.max_new_tokens == 0;
  std::lock_guard<std::mutex> lock(session.busy_);
  id_ = ++session.last_id_;
  session.owner_ = id_;
}

int32_t Generation::next() {
  if (done_) return -1;
  std::lock_guard<std::mutex> lock(session_.busy_);
  NT_CHECK(session_.owner_ == id_,
           "this generation was interrupted: the model ran another forward() or generation since it started");
  Workspace& ws = session_.workspace_;
  float* logits = ws.logits.get();
  const int n_prompt = int(prompt_.size()), n = n_generated_.load();
  if (n == 0) session_.model_->forward(session_.cache_, ws, prompt_.data(), n_prompt, 0, logits, false, session_.n_threads());
  else session_.model_->forward(session_.cache_, ws, &last_token_, 1, n_prompt + n - 1, logits, false, session_.n_threads());
  if (n < options_.min_new_tokens)
    for (int32_t id : options_.eos_ids) logits[id] = -INFINITY;
  last_token_ = sampler_.sample(logits);
  n_generated_.store(n + 1);
  const auto& eos = options_.eos_ids;
  done_ = n + 1 == options_.max_new_tokens || std::find(eos.begin(), eos.end(), last_token_) != eos.end();
  return last_token_;
}

}  // namespace nextoken
