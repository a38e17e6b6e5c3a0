// transformer.h: the one transformer stack every architecture runs through, set up by a ModelConfig.
//
// A Transformer is the immutable part of a model (config, weights by role, RoPE tables, repacked
// weights): shareable by any number of threads and sequences. The sequence state (KVCache) and the
// activations (Workspace) are passed to forward(), so the same weights serve every sequence.
#pragma once

#include <vector>

#include "kv_cache.h"
#include "weights.h"
#include "workspace.h"

namespace nextoken {

class Transformer {
 public:
  // Checks the config and every weight's role, type and shape; throws nextoken::Error.
  // max_positions: the longest sequence any cache will hold (RoPE tables are built for it).
  // weights_file_mapped: the tensors are views of a read-only file mapping, so with int8 compute the
  // pages of each matrix can be dropped from memory once it is repacked (peak RSS: one copy, not two).
  Transformer(const ModelConfig& config, const TensorMap& tensors, int max_positions, ComputeType compute,
              bool weights_file_mapped, int n_threads);

  // tokens[0 .. T) at positions pos0 .. pos0 + T - 1 of the sequence in `cache` (positions before pos0
  // must be in it); runs in chunks of ws.batch tokens. logits: (T, vocab) when all_logits, else (vocab)
  // for the last token, or nullptr for none. Tokens and positions must already be checked (check_tokens).
  void forward(KVCache& cache, Workspace& ws, const int32_t* tokens, int T, int pos0, float* logits,
               bool all_logits, int n_threads) const;

  // Throws nextoken::Error unless T > 0, every id is in the vocabulary and the positions fit `capacity`.
  void check_tokens(const int32_t* tokens, int T, int pos0, int capacity) const;

  const ModelConfig& config() const { return config_; }
  int max_positions() const { return max_positions_; }

 private:
  // Up to ws.batch tokens: the transformer body, then the logits of the rows asked for.
  void forward_chunk(KVCache& cache, Workspace& ws, const int32_t* tokens, int T, int pos0, float* logits,
                     bool all_logits, int n_threads) const;

  ModelConfig config_;
  ModelWeights weights_;
  int max_positions_;
  std::vector<FloatBuffer> rope_cos_, rope_sin_;  // per table: (max_positions, D/2)
  PackedBuffer packed_;                            // every Matrix::packed points in here (int8 compute)
};

}  // namespace nextoken
