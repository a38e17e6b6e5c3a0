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

// A weight matrix: the file's view, and its repacked copy when the model runs with int8 activations.
struct Matrix {
  TensorView view;
  const uint8_t* packed = nullptr;  // kernels.h's packed layout, or null: the fp32 path
};

struct LlamaLayer {
  const float* attn_norm;  // (C)
  const float* ffn_norm;   // (C)
  Matrix wq, wk, wv;       // (H * D, C), (H_kv * D, C), (H_kv * D, C)
  Matrix wo;               // (C, H * D)
  Matrix w_gate, w_up;     // (hidden, C)
  Matrix w_down;           // (C, hidden)
};

struct LlamaWeights {
  TensorView token_embd;     // (vocab, C)
  const float* output_norm;  // (C)
  Matrix output;             // (vocab, C), token_embd when the embeddings are tied
  std::vector<LlamaLayer> layers;
};

// How matrix products run. Float32: fp32 activations, weights dequantized on the fly (matches the
// fp32 reference to rounding). Int8: activations quantized per 32-block, integer dot products against
// weights repacked at load (faster; logits differ from fp32 by the activation quantization error).
enum class ComputeType { Float32, Int8 };

}  // namespace nextoken
