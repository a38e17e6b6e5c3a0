// weights.h: a model's weights by role, as views of memory the caller keeps alive.
//
// Roles (what the loaders, csrc/loaders/gguf_models.cpp and hf_models.cpp, map a file's tensors to):
//   token_embd (vocab, C), pos_embd (n_pos, C) [learned positions], output_norm (C) [+ .bias],
//   output (vocab, C) [absent: tied to token_embd], and per layer i, prefixed "blk.i.":
//   attn_norm, post_attention_norm, ffn_norm, post_ffw_norm (C) [+ .bias for LayerNorm],
//   attn_q (H*D, C), attn_k, attn_v (H_kv*D, C), attn_output (C, H*D) [+ .bias each],
//   attn_q_norm, attn_k_norm (D) [qk_norm], ffn_gate [gated], ffn_up (hidden, C), ffn_down (C, hidden)
//   [+ .bias each]; with cross_attention: cross_attn_norm, cross_attn_q, cross_attn_k, cross_attn_v,
//   cross_attn_output [+ .bias each]. Model-wide: embd_norm [embed_norm], output.bias (vocab) [optional:
//   BART's final_logits_bias], attn_rel_bias (H, 2 relative_span - 1) [T5].
// Which are required follows from the config (norm kind and placement, gating, positions, qk_norm);
// bind_weights() checks presence, type and shape of each and rejects roles the config does not use.
// Immutable once bound: one ModelWeights serves every thread and sequence.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "buffers.h"
#include "config.h"
#include "packed_cache.h"

namespace nextoken {

// A weight as stored, not copied: `rows` x `cols` elements of `type`, rows contiguous. A matrix used
// in y = x W^T has rows = output features and cols = input features.
struct TensorView {
  DType type = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
};

using TensorMap = std::map<std::string, TensorView>;  // keyed by role

// A weight matrix: the stored view, and its repacked copy when the model runs with int8 activations.
struct Matrix {
  TensorView view;
  const uint8_t* packed = nullptr;  // kernels.h's packed layout, or null: the fp32 path
  bool present() const { return view.data != nullptr; }
};

// A norm: weight (C) and, for LayerNorm, bias (C); F32. weight == nullptr: the model has no such norm.
struct Norm {
  const float* weight = nullptr;
  const float* bias = nullptr;
};

// An attention sublayer's projections: q (H*D, C), k and v (H_kv*D, C), o (C, H*D), biases optional.
struct AttentionWeights {
  Matrix q, k, v, o;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
};

struct LayerWeights {
  Norm attn_norm, post_attention_norm, ffn_norm, post_ffw_norm;
  AttentionWeights attn;
  const float *q_norm = nullptr, *k_norm = nullptr;  // (D)
  Matrix w_gate, w_up, w_down;               // (hidden, C) x 2, (C, hidden); w_gate absent when not gated
  const float *b_gate = nullptr, *b_up = nullptr, *b_down = nullptr;
  Norm cross_norm;                           // cross-attention (decoders of encoder-decoder models)
  AttentionWeights cross;
};

struct ModelWeights {
  TensorView token_embd;  // (vocab, C)
  TensorView pos_embd;    // (n_pos, C) learned positions, or empty
  Norm output_norm;       // absent for post-norm models
  Matrix output;          // (vocab, C); token_embd's view when the head is tied
  const float* output_bias = nullptr;  // (vocab)
  Norm embd_norm;
  const float* rel_bias = nullptr;     // (H, 2 relative_span - 1)
  std::vector<LayerWeights> layers;
};

// Checks every role against the config; throws nextoken::Error naming the role on any mismatch,
// a missing required role, or a role the config does not use.
ModelWeights bind_weights(const ModelConfig& c, const TensorMap& tensors);

// compute_type "int8": every matrix with a packed form (kernels.h) repacked into `buffer`, its
// Matrix::packed set. With file_mapped, each matrix's file pages are released once repacked. With a
// cache (packed_cache.h), the packed bytes are read from it when it holds them, else written to it.
// Returns whether they came from the cache.
bool pack_matrices(ModelWeights& w, PackedBuffer& buffer, bool file_mapped, int n_threads, const PackedCache& cache);

}  // namespace nextoken
