// config.h: the choices that tell one transformer family from another, as data.
//
// Every supported architecture (Llama, Mistral, Qwen2, GPT-2, Gemma 3, ...) is this one stack with a
// different ModelConfig; the loaders (csrc/loaders/gguf_models.cpp, hf_models.cpp) map a file's keys onto
// it. The model never sees a file's own names: weights arrive by role (weights.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common.h"

namespace nextoken {

enum class NormKind { RMS, Layer };  // RMS: x / rms(x) * w;  Layer: (x - mean) / std * w + b
// Where a block's norms sit.  Pre: x += f(norm(x)).  Post: x = norm(x + f(x)).
// Sandwich (Gemma 2/3): x += post_norm(f(pre_norm(x))).
enum class NormPlacement { Pre, Post, Sandwich };
// Positions: rotary (RoPE) on q and k, a learned table added to the embeddings, or none.
enum class Positions { None, Rope, Learned };
// RoPE pairs: Adjacent rotates (x[2i], x[2i+1]) (GGUF's Llama layout); Half rotates (x[i], x[i + D/2])
// (Hugging Face's rotate_half, and GGUF's NeoX-style models).
enum class RopeLayout { Adjacent, Half };

enum class ComputeType { Float32, Int8 };

struct LayerConfig {
  int sliding_window = 0;  // 0: attends to every earlier position; W > 0: to the last W (itself included)
  int rope_table = 0;      // which of ModelConfig::rope_inv_freq this layer rotates with
};

struct ModelConfig {
  int n_layers = 0;
  int dim = 0;          // C: residual stream width
  int hidden_dim = 0;   // feed-forward width
  int n_heads = 0;      // H
  int n_kv_heads = 0;   // H_kv
  int head_dim = 0;     // D
  int vocab_size = 0;

  NormKind norm = NormKind::RMS;
  NormPlacement norm_placement = NormPlacement::Pre;
  float norm_eps = 1e-5f;
  Activation activation = Activation::SiLU;  // common.h
  bool gated = true;  // MLP: down(act(gate x) * up x); not gated: down(act(up x))

  Positions positions = Positions::Rope;
  RopeLayout rope_layout = RopeLayout::Adjacent;
  // Inverse frequencies (D/2 each) of every distinct RoPE table: base^(-2i/D), or scaled variants of it
  // (linear, llama3, a file's rope_freqs), computed by the architecture module as Hugging Face does.
  std::vector<std::vector<float>> rope_inv_freq;
  int position_offset = 0;  // learned positions: row position + offset of the table (BART: 2)

  float attn_scale = 0.0f;     // multiplies q k^T; 0 means 1 / sqrt(D)
  bool qk_norm = false;        // RMS norm of each q and k head (over D) before RoPE
  float embed_scale = 1.0f;    // embeddings are multiplied by this (Gemma: sqrt(C))
  float final_softcap = 0.0f;  // > 0: logits = cap * tanh(logits / cap)

  // Encoder-decoder models: the encoder is this stack with causal = false (every position sees every
  // other); the decoder's layers add a cross-attention sublayer over the encoder's states, after
  // self-attention (pre or post norm like the others).
  bool causal = true;
  bool cross_attention = false;
  bool embed_norm = false;     // a norm of the embeddings (positions added) before layer 0 (BART)
  int relative_span = 0;       // > 0: T5's self-attention bias table, role attn_rel_bias (H, 2 span - 1)
  float head_scale = 1.0f;     // the last hidden state times this before the head (T5's tied head: C^-0.5)

  DType kv_type = DType::F32;  // how the KV cache stores keys and values: F32, F16 or BF16
  Device device = Device::CPU;  // where the weights, KV caches and activations live (a load option)

  std::vector<LayerConfig> layers;  // n_layers entries
};

// Throws nextoken::Error unless the sizes and choices are consistent.
void check_config(const ModelConfig& c);

}  // namespace nextoken
