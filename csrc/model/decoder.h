// decoder.h: a decoder-only Llama-family transformer (Llama, SmolLM, Mistral-style GQA) on the CPU.
//
// forward() runs tokens at given positions through the model and fills the KV cache; a Generation is one
// prompt's continuation, advanced a token per call (prefill on the first). Every op is a kernel from
// kernels/; the buffers (cache, workspace, RoPE table) are allocated once, in the constructor.
#pragma once

#include <initializer_list>
#include <mutex>
#include <utility>
#include <vector>

#include "buffers.h"
#include "config.h"
#include "sampler.h"

namespace nextoken {

struct GenerateOptions {
  int max_new_tokens = 32;
  int min_new_tokens = 0;       // EOS is masked out until this many tokens exist
  SamplingParams sampling;
  std::vector<int32_t> eos_ids;  // generation stops after emitting one of these
};

class LlamaModel {
 public:
  // Checks every tensor's presence, type and shape against the config; throws nextoken::Error.
  // weights_file_mapped: the tensors are views of a read-only file mapping, so with int8 compute the
  // pages of each matrix can be dropped from memory once it is repacked (peak RSS: one copy, not two).
  LlamaModel(const LlamaConfig& config, const TensorMap& tensors, int n_ctx, int n_threads,
             ComputeType compute = ComputeType::Float32, bool weights_file_mapped = false);

  // tokens[0 .. T) at positions pos0 .. pos0 + T - 1 (positions before pos0 must be in the cache).
  // logits: (T, vocab) when all_logits, else (vocab) for the last token.
  void forward(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits);

  const LlamaConfig& config() const { return config_; }
  int n_ctx() const { return cache_.capacity; }
  int n_threads() const { return n_threads_; }
  void set_n_threads(int n);

 private:
  friend class Generation;
  // forward() without taking the cache over: what a Generation runs.
  void run(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits);
  // Up to workspace_.batch tokens: the transformer body, then the logits of the rows asked for.
  void forward_chunk(const int32_t* tokens, int T, int pos0, float* logits, bool all_logits);
  void check_tokens(const int32_t* tokens, int T, int pos0) const;
  // ys[i] (T, N_i) = x (T, K) @ W_i^T for matrices that share x, on the path each matrix is set up for.
  void project(std::initializer_list<std::pair<float*, const Matrix*>> outs, const float* x, int T, int K);
  void pack_matrices();
  // fn(t0, t1) over token ranges, split across the threads when there are enough tokens (prefill).
  // For row-wise ops (norm, RoPE, residual add, SwiGLU): the results do not depend on the split.
  template <class F>
  void by_tokens(int T, const F& fn) const;

  LlamaConfig config_;
  LlamaWeights weights_;
  int n_threads_;
  KVCache cache_;
  Workspace workspace_;
  FloatBuffer rope_cos_, rope_sin_;  // (n_ctx, D/2)
  PackedBuffer packed_;               // every Matrix::packed points in here (int8 compute)
  bool release_file_pages_;
  uint64_t cache_owner_ = 0;         // bumped by every forward() and Generation: who the cache belongs to
  std::mutex busy_;                  // one computation at a time: callers on other threads wait their turn
};

// The continuation of one prompt. The model's cache holds this generation's state, so a later forward()
// or Generation on the same model ends it (next() then throws).
class Generation {
 public:
  // Checks the prompt and options; computes nothing yet.
  Generation(LlamaModel& model, std::vector<int32_t> prompt, const GenerateOptions& options);
  // The next token (the first call prefills the prompt), or -1 once an EOS id has been emitted or
  // max_new_tokens reached. The EOS token itself is returned before the end, as Hugging Face does.
  int32_t next();
  int n_generated() const { return n_generated_; }

 private:
  LlamaModel& model_;
  std::vector<int32_t> prompt_;
  GenerateOptions options_;
  Sampler sampler_;
  uint64_t owner_id_ = 0;
  int n_generated_ = 0;
  int32_t last_token_ = -1;
  bool done_ = false;
};

}  // namespace nextoken
