// session.h: the sequences that run on one model, and the step that advances them together.
//
// A Session holds any number of sequences over a shared Transformer, each with its own KV cache, tokens
// and sampling. step() runs one forward pass over the new tokens of every sequence it is given (a
// ragged batch: one sequence's prompt beside other sequences' last tokens), then samples one token for
// each. Results are the same bit for bit whatever ran beside a sequence (kernels.h), and its draws come
// from (seed, step) alone, so a sequence gives the same tokens alone or in any batch.
//
// Two ways to drive it: step() for callers that schedule themselves (a server, a speculative decoder),
// and next() for callers that want one sequence's tokens (generate() on any number of threads): next()
// steps together every such sequence that is waiting for a token, so overlapping calls share passes.
// One computation at a time (a mutex); every call checks its input before it changes anything.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "sampler.h"
#include "transformer.h"

namespace nextoken {

struct SequenceOptions {
  int max_new_tokens = 32;       // < 0: no limit (with context_shift only)
  int min_new_tokens = 0;        // EOS is masked out until this many tokens exist
  SamplingParams sampling;
  std::vector<int32_t> eos_ids;  // the sequence ends after emitting one of these
  int logprobs = -1;             // >= 0: report each token's log-probability and this many alternatives
  bool context_shift = false;    // when the cache is full, drop the oldest half after n_keep and go on
  int n_keep = 0;                // positions a context shift keeps at the start (attention sinks)
  int32_t forced_bos = -1;       // >= 0: the first new token (mBART's target language code), as HF forces it
};

// One token of one sequence.
struct StepOutput {
  uint64_t id = 0;
  int32_t token = -1;     // -1: none (the sequence had already finished)
  bool finished = false;  // this token ended the sequence (an EOS id or max_new_tokens)
  float logprob = 0.0f;   // log softmax of the raw logits at `token` (options.logprobs >= 0)
  std::vector<std::pair<int32_t, float>> top;  // the options.logprobs most likely (id, log-probability)
};

class Session {
 public:
  Session(std::shared_ptr<const Transformer> model, int n_ctx, int n_threads);
  ~Session();

  // A new sequence continuing `prompt`; checks everything, computes nothing. pulled: driven by next()
  // (not by step()). If the cache of the last freed sequence starts like `prompt`, it is reused.
  // encoder_states (n_states, C): the source of an encoder-decoder model (its cross-attention keys and
  // values are computed here, once); null for decoder-only models.
  uint64_t add(std::vector<int32_t> prompt, const SequenceOptions& options, bool pulled,
               const float* encoder_states = nullptr, int n_states = 0);
  // One token for each sequence of `ids` (every unfinished step()-driven one when empty), in one pass.
  std::vector<StepOutput> step(const std::vector<uint64_t>& ids);
  // The next token of a pulled sequence (token -1 once it has finished).
  StepOutput next(uint64_t id);
  // A copy of a step()-driven sequence (its cache, tokens and options) that samples with its own seed.
  uint64_t fork(uint64_t id, uint64_t seed);
  // Ends a sequence; its cache is kept for the next add() whose prompt extends its tokens.
  void free(uint64_t id);
  // Prompt and generated tokens of a sequence (less those a context shift dropped); whether it has finished.
  std::vector<int32_t> tokens(uint64_t id);
  bool finished(uint64_t id);

  // Logits of tokens[0 .. T) at positions pos0 .. pos0 + T - 1 of a sequence kept for forward() calls
  // alone: pos0 > 0 continues the earlier calls (pos0 must not exceed what they left).
  // logits: (T, vocab) when all_logits, else (vocab) for the last token.
  void forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits,
               const float* encoder_states = nullptr, int n_states = 0);

  const Transformer& model() const { return *model_; }
  // Tokens run through the model by step()/next() so far (a reused prefix is not run again).
  uint64_t tokens_run() const { return tokens_run_.load(); }
  int n_ctx() const { return n_ctx_; }
  int n_threads() const { return n_threads_.load(); }
  void set_n_threads(int n);  // takes effect from the next call

 private:
  struct Sequence;
  Sequence& find(uint64_t id);
  // One token for each sequence, in as many passes of the workspace as their new tokens need.
  void run(const std::vector<Sequence*>& seqs, std::vector<StepOutput>& outs);
  void forward_passes(const std::vector<Sequence*>& seqs);  // until each has its logits
  void sample(const std::vector<Sequence*>& seqs, std::vector<StepOutput>& outs);
  void shift_context(Sequence& s);

  std::shared_ptr<const Transformer> model_;
  int n_ctx_;
  Workspace workspace_;
  std::atomic<int> n_threads_{1};
  std::atomic<uint64_t> tokens_run_{0};
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  uint64_t last_id_ = 0;
  std::unique_ptr<KVCache> retained_;       // the last freed sequence's cache ...
  std::vector<int32_t> retained_tokens_;    // ... and the tokens at its positions
  std::unique_ptr<KVCache> forward_cache_;  // forward()'s sequence
  std::mutex busy_;
};

}  // namespace nextoken
