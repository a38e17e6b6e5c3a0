// transformer.h: the one transformer stack every architecture runs through, set up by a ModelConfig.
//
// A Transformer is the immutable part of a model (config, weights by role, RoPE tables, repacked
// weights): shareable by any number of threads and sequences. The sequence state (KVCache) and the
// activations (Workspace) are passed to forward(), so the same weights serve every sequence.
// With config.device CUDA the weights are copied to the GPU once, and the caches and workspaces made for
// the model (from its config) live there too; tokens go in and logits come out through host memory.
#pragma once

#include <memory>
#include <vector>

#include "../kernels/cuda.h"
#include "kv_cache.h"
#include "weights.h"
#include "workspace.h"

namespace nextoken {

// One sequence's part of a forward pass.
struct ForwardChunk {
  KVCache* cache;
  const int32_t* tokens;
  int T;           // tokens, at positions cache->length .. cache->length + T - 1
  float* logits;   // (T, vocab) when all_logits, else (vocab) for the last token; nullptr: none
  bool all_logits;
  const KVCache* cross = nullptr;     // cross-attention models: the encoder states' keys and values
  const float* embeddings = nullptr;  // (T, C) input vectors in place of tokens (tokens == nullptr)
  float* hidden = nullptr;            // (T, C): the last hidden states (after output_norm), or nullptr
};

class Transformer {
 public:
  // Checks the config and every weight's role, type and shape; throws nextoken::Error.
  // max_positions: the longest sequence any cache will hold (RoPE tables are built for it).
  // weights_file_mapped: the tensors are views of a read-only file mapping, so with int8 compute the
  // pages of each matrix can be dropped from memory once it is repacked (peak RSS: one copy, not two).
  // packed_cache: int8 compute's repacked weights are read from / written to this file (packed_cache.h).
  Transformer(const ModelConfig& config, const TensorMap& tensors, int max_positions, ComputeType compute,
              bool weights_file_mapped, int n_threads, const PackedCache& packed_cache = {});

  // One forward pass over a ragged batch: each chunk's tokens follow the positions already in its cache,
  // all rows of all chunks run through the weights together (each weight read once for the batch).
  // Total tokens at most ws.batch, at most MAX_ATTENTION_SEQS chunks, caches distinct. Each row's result
  // depends only on its own sequence, bit for bit (kernels.h). Tokens must already be checked.
  void forward_batch(const ForwardChunk* chunks, int n_chunks, Workspace& ws, int n_threads) const;

  // One sequence, any length: tokens[0 .. T) at positions pos0 .. pos0 + T - 1 of `cache` (positions
  // before pos0 must be in it), in passes of ws.batch tokens. logits: (T, vocab) when all_logits, else
  // (vocab) for the last token, or nullptr for none. cross: a cross-attention decoder's encoder keys/values.
  void forward(KVCache& cache, Workspace& ws, const int32_t* tokens, int T, int pos0, float* logits,
               bool all_logits, int n_threads, const KVCache* cross = nullptr) const;

  // The keys of positions [from, to) of every layer, rotated back by `delta` positions (context shift:
  // keys move to earlier slots; RoPE's rotations compose, so R(p) then R(-delta) is R(p - delta)).
  void rerotate_keys(KVCache& cache, int from, int to, int delta) const;

  // An encoder (causal = false) over T tokens, or over T input vectors when tokens is null:
  // hidden (T, C) = its last hidden states. Positions 0 .. T - 1 (all in one pass).
  void encode(const int32_t* tokens, const float* embeddings, int T, float* hidden, int n_threads) const;

  // A cross-attention decoder's keys and values of encoder states (S, C), every layer: computed once
  // per request and read by every step (and beam) of its sequences.
  std::unique_ptr<KVCache> cross_cache(const float* states, int S, int n_threads) const;

  // Throws nextoken::Error unless T > 0, every id is in the vocabulary and the positions fit `capacity`.
  void check_tokens(const int32_t* tokens, int T, int pos0, int capacity) const;

  const ModelConfig& config() const { return config_; }
  int max_positions() const { return max_positions_; }
  bool packed_from_cache() const { return packed_from_cache_; }  // int8: the packed weights came from the cache

 private:
  // Layer l's new queries and keys normed (QK-norm) and rotated, and its keys and values stored in each chunk's
  // cache, on the GPU: chunk by chunk, whose rows' positions follow one another (a launch each, not one per row).
  void rope_and_store_on_device(const ForwardChunk* chunks, int n_chunks, Workspace& ws, int l) const;

  ModelConfig config_;
  std::vector<std::unique_ptr<cuda::Buffer>> device_tensors_;  // the weights on the GPU (device CUDA)
  ModelWeights weights_;
  int max_positions_;
  std::vector<FloatBuffer> rope_cos_, rope_sin_;  // per table: (max_positions, D/2)
  PackedBuffer packed_;                            // every Matrix::packed points in here (int8 compute)
  bool packed_from_cache_ = false;
};

}  // namespace nextoken
