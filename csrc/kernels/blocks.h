// blocks.h: 32 weights at a time out of any GGUF block type, plain scalar code with ggml's float32
// arithmetic: every product below is exact in float32 (11-bit significands times at most 8-bit
// integers), so the result equals ggml's dequantize_row_* bit for bit, with or without FMA contraction.
// Used by dequantize_row, by the CPU matmul for the types its vector code does not decode itself, and
// by the CUDA kernels (host and device code under nvcc).
#pragma once

#include "../common.h"

namespace nextoken {
namespace blocks {

// The 6-bit scale and min of sub-block j (0..7), packed in 12 bytes: bytes 0-3 hold the scales of
// j = 0..3 and 4-7 their mins, whose top 2 bits are the high bits of j + 4; bytes 8-11 hold the low
// nibbles of j + 4's scale (low) and min (high).
NT_HOST_DEVICE inline void scale_min_k4(int j, const uint8_t* s, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63;
    min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Weights 32b .. 32b + 31 of a row stored as `type` (a block type: not F32, F16 or BF16).
NT_HOST_DEVICE inline void decode32(float* out, const uint8_t* row, DType type, int64_t b) {
  switch (type) {
    case DType::Q4_0: {  // byte j: weight j in its low nibble, j + 16 in its high one
      const BlockQ4_0& x = reinterpret_cast<const BlockQ4_0*>(row)[b];
      const float d = f16_to_f32(x.d);
      for (int j = 0; j < QK / 2; ++j) {
        out[j] = float((x.qs[j] & 0xF) - 8) * d;
        out[j + QK / 2] = float((x.qs[j] >> 4) - 8) * d;
      }
      return;
    }
    case DType::Q4_1: {
      const BlockQ4_1& x = reinterpret_cast<const BlockQ4_1*>(row)[b];
      const float d = f16_to_f32(x.d), m = f16_to_f32(x.m);
      for (int j = 0; j < QK / 2; ++j) {
        out[j] = float(x.qs[j] & 0xF) * d + m;
        out[j + QK / 2] = float(x.qs[j] >> 4) * d + m;
      }
      return;
    }
    case DType::Q8_0: {
      const BlockQ8_0& x = reinterpret_cast<const BlockQ8_0*>(row)[b];
      const float d = f16_to_f32(x.d);
      for (int j = 0; j < QK; ++j) out[j] = float(x.qs[j]) * d;
      return;
    }
    case DType::Q5_0: {
      const BlockQ5_0& x = reinterpret_cast<const BlockQ5_0*>(row)[b];
      const float d = f16_to_f32(x.d);
      uint32_t qh;
      std::memcpy(&qh, x.qh, 4);
      for (int j = 0; j < QK / 2; ++j) {
        const int low = (x.qs[j] & 0xF) | int((qh >> j) & 1) << 4, high = (x.qs[j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
        out[j] = float(low - 16) * d;
        out[j + 16] = float(high - 16) * d;
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      // Both: w = (d * scale) * q - dmin * min; codes of sub-block j in the low (even j) or high (odd j)
      // nibbles of the 32 bytes qs[32 (j / 2) ..]; Q5_K's fifth bit of weight l is bit j of qh[l].
      const bool five = type == DType::Q5_K;
      const int j = int(b % 8);
      const uint8_t *scales, *qs, *qh = nullptr;
      uint16_t d16, dmin16;
      if (five) {
        const BlockQ5_K& x = reinterpret_cast<const BlockQ5_K*>(row)[b / 8];
        scales = x.scales, qs = x.qs, qh = x.qh, d16 = x.d, dmin16 = x.dmin;
      } else {
        const BlockQ4_K& x = reinterpret_cast<const BlockQ4_K*>(row)[b / 8];
        scales = x.scales, qs = x.qs, d16 = x.d, dmin16 = x.dmin;
      }
      int scale, min;
      scale_min_k4(j, scales, scale, min);
      const float d = f16_to_f32(d16) * float(scale), m = f16_to_f32(dmin16) * float(min);
      const uint8_t* q = qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) {
        const int code = ((q[l] >> shift) & 0xF) | (five ? ((qh[l] >> j) & 1) << 4 : 0);
        out[l] = d * float(code) - m;
      }
      return;
    }
    case DType::Q6_K: {
      // Halves of 128 weights; inside one, weight 32s + l takes its low 4 bits from ql (s = 0: low nibble
      // of ql[l], 1: low of ql[l + 32], 2: high of ql[l], 3: high of ql[l + 32]) and its high 2 bits from
      // bits 2s, 2s + 1 of qh[l]; q - 32, times d * scales[one per 16 weights].
      const BlockQ6_K& x = reinterpret_cast<const BlockQ6_K*>(row)[b / 8];
      const int j = int(b % 8), half = j / 4, s = j % 4;
      const uint8_t* ql = x.ql + 64 * half + 32 * (s & 1);
      const uint8_t* qh = x.qh + 32 * half;
      const int shift = s >= 2 ? 4 : 0;
      const float d = f16_to_f32(x.d);
      for (int l = 0; l < 32; ++l) {
        const int q = (((ql[l] >> shift) & 0xF) | (((qh[l] >> (2 * s)) & 3) << 4)) - 32;
        out[l] = d * float(x.scales[2 * j + l / 16]) * float(q);
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace blocks
}  // namespace nextoken
