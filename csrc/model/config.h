// config.h: what a decoder-only Llama-family model is made of: its sizes and views of its weights.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "../common.h"

namespace nextoken {

struct LlamaConfig {
  int n_layers = 0;
  int dim = 0;          // C: residual stream width
  int hidden_dim = 0;   // feed-forward width
  int n_heads = 0;      // H
  int n_kv_heads = 0;   // H_kv
  int head_dim = 0;     // D
  int vocab_size = 0;
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
};

// A weight as stored in the file, not copied: `rows` x `cols` elements of `type`, rows contiguous.
// A matrix used in y = x W^T has rows = output features and cols = input features.
struct TensorView {
  DType type = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
};

using TensorMap = std::map<std::string, TensorView>;  // keyed by GGUF tensor names

struct LlamaLayer {
  const float* attn_norm;  // (C)
  const float* ffn_norm;   // (C)
  TensorView wq, wk, wv;   // (H * D, C), (H_kv * D, C), (H_kv * D, C)
  TensorView wo;           // (C, H * D)
  TensorView w_gate, w_up; // (hidden, C)
  TensorView w_down;       // (C, hidden)
};

struct LlamaWeights {
  TensorView token_embd;     // (vocab, C)
  const float* output_norm;  // (C)
  TensorView output;         // (vocab, C), token_embd when the embeddings are tied
  std::vector<LlamaLayer> layers;
};

}  // namespace nextoken
