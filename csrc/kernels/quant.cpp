// quant.cpp: GGUF weight rows back to float, element by element as ggml's dequantize_row_* does.
#include "kernels.h"

namespace nextoken {

void dequantize_row(float* out, const void* row, DType type, int64_t n) {
  switch (type) {
    case DType::F32:
      std::memcpy(out, row, sizeof(float) * n);
      return;
    case DType::F16: {
      const uint16_t* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(h[i]);
      return;
    }
    case DType::Q4_0: {
      const BlockQ4_0* blk = static_cast<const BlockQ4_0*>(row);
      for (int64_t b = 0; b < n / QK; ++b, out += QK) {
        const float d = f16_to_f32(blk[b].d);
        for (int j = 0; j < QK / 2; ++j) {
          out[j] = float((blk[b].qs[j] & 0xF) - 8) * d;
          out[j + QK / 2] = float((blk[b].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case DType::Q4_1: {
      const BlockQ4_1* blk = static_cast<const BlockQ4_1*>(row);
      for (int64_t b = 0; b < n / QK; ++b, out += QK) {
        const float d = f16_to_f32(blk[b].d), m = f16_to_f32(blk[b].m);
        for (int j = 0; j < QK / 2; ++j) {
          out[j] = float(blk[b].qs[j] & 0xF) * d + m;
          out[j + QK / 2] = float(blk[b].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
    case DType::Q8_0: {
      const BlockQ8_0* blk = static_cast<const BlockQ8_0*>(row);
      for (int64_t b = 0; b < n / QK; ++b, out += QK) {
        const float d = f16_to_f32(blk[b].d);
        for (int j = 0; j < QK; ++j) out[j] = float(blk[b].qs[j]) * d;
      }
      return;
    }
  }
}

}  // namespace nextoken
