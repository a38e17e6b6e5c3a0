// weight_blocks.cuh: 32 weights of a stored row as float32, for the CUDA kernels (matmul, embedding): the
// block types through blocks::decode32, the CPU's own decoder, so both decode every weight to the same bits.
#pragma once

#include <type_traits>

#include "blocks.h"

namespace nextoken {
namespace cuda {

__host__ __device__ constexpr bool is_float_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// Weights 32b .. 32b + 31 of a row of n; the float types allow any n, so their last block is padded with 0.
template <DType TYPE>
__device__ inline void load_weight_block(float* w, const uint8_t* row, int b, int n) {
  if constexpr (is_float_type(TYPE)) {
#pragma unroll
    for (int j = 0; j < QK; ++j) {
      const int k = QK * b + j;
      float v = 0.0f;
      if (k < n) {
        if constexpr (TYPE == DType::F32) v = reinterpret_cast<const float*>(row)[k];
        else if constexpr (TYPE == DType::F16) v = f16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
        else v = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[k]);
      }
      w[j] = v;
    }
  } else {
    blocks::decode32(w, row, TYPE, b);
  }
}

// fn(std::integral_constant<DType, type>()): a kernel template instantiated for each weight type, picked at
// run time.
template <class Fn>
void with_weight_type(DType type, const Fn& fn) {
  switch (type) {
    case DType::F32: return fn(std::integral_constant<DType, DType::F32>());
    case DType::F16: return fn(std::integral_constant<DType, DType::F16>());
    case DType::BF16: return fn(std::integral_constant<DType, DType::BF16>());
    case DType::Q4_0: return fn(std::integral_constant<DType, DType::Q4_0>());
    case DType::Q4_1: return fn(std::integral_constant<DType, DType::Q4_1>());
    case DType::Q5_0: return fn(std::integral_constant<DType, DType::Q5_0>());
    case DType::Q8_0: return fn(std::integral_constant<DType, DType::Q8_0>());
    case DType::Q4_K: return fn(std::integral_constant<DType, DType::Q4_K>());
    case DType::Q5_K: return fn(std::integral_constant<DType, DType::Q5_K>());
    case DType::Q6_K: return fn(std::integral_constant<DType, DType::Q6_K>());
  }
}

}  // namespace cuda
}  // namespace nextoken
