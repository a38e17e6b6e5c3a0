// quant.cpp: GGUF weight rows back to float, element by element as ggml's dequantize_row_* does.
#include <algorithm>
#include <cmath>
#include <cstddef>

#include "../parallel.h"
#include "blocks.h"
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
    case DType::BF16: {
      const uint16_t* h = static_cast<const uint16_t*>(row);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(h[i]);
      return;
    }
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q8_0:
    case DType::Q5_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      for (int64_t b = 0; b < n / QK; ++b, out += QK) blocks::decode32(out, static_cast<const uint8_t*>(row), type, b);
      return;
  }
}

// ---- packing for matmul_int8 (layout in kernels.h) ---------------------------------------------------
PackedFormat packed_format(DType type) {
  switch (type) {
    case DType::Q4_0: return {4, false};
    case DType::Q4_1: case DType::Q4_K: return {4, true};
    case DType::Q5_0: return {5, false};
    case DType::Q5_K: return {5, true};
    case DType::Q6_K: return {6, false};
    case DType::Q8_0: return {8, false};
    default: return {};
  }
}

// Q4_K / Q5_K sub-block b of a row (32 weights): w = (d sc) u - dmin mn, with d sc and dmin mn exact in
// fp32. The packed layout keeps one f16 scale and offset per 32 weights, so these two products are
// rounded to f16 there (relative 2^-11 at most, against the ~0.4 % of the activations' int8 rounding):
// the one packing that is not exact, and reference.packed_weights says so too.
static void k_quant_affine(const uint8_t* row, DType type, int b, float& scale, float& offset) {
  const size_t super_bytes = type == DType::Q4_K ? sizeof(BlockQ4_K) : sizeof(BlockQ5_K);
  const uint8_t* x = row + size_t(b / 8) * super_bytes;  // d, dmin and scales lead both layouts
  uint16_t d, dmin;
  std::memcpy(&d, x, 2);
  std::memcpy(&dmin, x + 2, 2);
  int sc, mn;
  blocks::scale_min_k4(b % 8, x + 4, sc, mn);
  scale = f16_to_f32(d) * float(sc);
  offset = -(f16_to_f32(dmin) * float(mn));
}

size_t packed_bytes(DType type, int N, int K) {
  const PackedFormat f = packed_format(type);
  return f.bits ? size_t((N + 15) / 16) * (K / QK) * packed_chunk_bytes(f) : 0;
}

bool pack_fits(const void* w, DType type, int N, int K) {
  if (type != DType::Q4_K && type != DType::Q5_K) return true;  // the other types' f16 d and m are the file's
  const size_t rb = row_bytes(type, K);  // d sc and dmin mn become f16
  for (int n = 0; n < N; ++n)
    for (int b = 0; b < K / QK; ++b) {
      float scale, offset;
      k_quant_affine(static_cast<const uint8_t*>(w) + size_t(n) * rb, type, b, scale, offset);
      if (!(std::fabs(scale) <= 65504.0f && std::fabs(offset) <= 65504.0f)) return false;
    }
  return true;
}

// Group g (rows 16g .. 16g + 15) of pack_weight's output.
static void pack_group(uint8_t* out, const void* w, DType type, int N, int K, int g) {
  const PackedFormat f = packed_format(type);
  const int n_blocks = K / QK;
  const size_t rb = row_bytes(type, K), chunk = packed_chunk_bytes(f);
  std::memset(out + size_t(g) * n_blocks * chunk, 0, size_t(n_blocks) * chunk);  // rows past N stay zero
  for (int n = g * 16; n < std::min(N, g * 16 + 16); ++n) {
    const uint8_t* row = static_cast<const uint8_t*>(w) + size_t(n) * rb;
    const int j = n % 16;
    for (int b = 0; b < n_blocks; ++b) {
      uint8_t* c = out + (size_t(g) * n_blocks + b) * chunk;
      uint16_t* d = reinterpret_cast<uint16_t*>(c);
      uint16_t* m = d + 16;  // only with f.offset
      uint8_t u[QK];         // the block's unsigned codes: w = d u + m, or d (u - 2^(bits - 1))
      if (type == DType::Q8_0) {
        const BlockQ8_0& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        for (int i = 0; i < QK; ++i) u[i] = uint8_t(blk.qs[i] + 128);
        d[j] = blk.d;
      } else if (type == DType::Q5_0) {
        const BlockQ5_0& blk = reinterpret_cast<const BlockQ5_0*>(row)[b];
        uint32_t qh;
        std::memcpy(&qh, blk.qh, 4);
        for (int i = 0; i < QK / 2; ++i) {
          u[i] = uint8_t((blk.qs[i] & 0xF) | ((qh >> i) & 1) << 4);
          u[i + QK / 2] = uint8_t((blk.qs[i] >> 4) | ((qh >> (i + 16)) & 1) << 4);
        }
        d[j] = blk.d;
      } else if (type == DType::Q6_K) {  // layout in blocks.h; w = d sc (u - 32), the same float products
        const BlockQ6_K& x = reinterpret_cast<const BlockQ6_K*>(row)[b / 8];
        const int sub = b % 8, half = sub / 4, s = sub % 4;
        const uint8_t* ql = x.ql + 64 * half + 32 * (s & 1);
        const uint8_t* qh = x.qh + 32 * half;
        for (int i = 0; i < QK; ++i) u[i] = uint8_t(((ql[i] >> (s >= 2 ? 4 : 0)) & 0xF) | ((qh[i] >> (2 * s)) & 3) << 4);
        d[j] = x.d;
        int8_t* sc = reinterpret_cast<int8_t*>(c + 32);
        sc[j] = x.scales[2 * sub];
        sc[16 + j] = x.scales[2 * sub + 1];
      } else if (type == DType::Q4_K || type == DType::Q5_K) {  // 4- or 5-bit codes, layout in blocks.h
        const bool five = type == DType::Q5_K;
        const uint8_t* x = row + size_t(b / 8) * (five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K));
        const uint8_t* qs = x + (five ? offsetof(BlockQ5_K, qs) : offsetof(BlockQ4_K, qs)) + 32 * ((b % 8) / 2);
        const uint8_t* qh = x + offsetof(BlockQ5_K, qh);
        const int shift = (b % 2) * 4;
        for (int i = 0; i < QK; ++i)
          u[i] = uint8_t(((qs[i] >> shift) & 0xF) | (five ? ((qh[i] >> (b % 8)) & 1) << 4 : 0));
        float scale, offset;
        k_quant_affine(row, type, b, scale, offset);
        d[j] = f32_to_f16(scale);  // rounded: see k_quant_affine
        m[j] = f32_to_f16(offset);
      } else {
        const uint8_t* qs = type == DType::Q4_1 ? reinterpret_cast<const BlockQ4_1*>(row)[b].qs
                                                : reinterpret_cast<const BlockQ4_0*>(row)[b].qs;
        for (int i = 0; i < QK / 2; ++i) {
          u[i] = qs[i] & 0xF;
          u[i + QK / 2] = qs[i] >> 4;
        }
        if (type == DType::Q4_1) {
          d[j] = reinterpret_cast<const BlockQ4_1*>(row)[b].d;
          m[j] = reinterpret_cast<const BlockQ4_1*>(row)[b].m;
        } else {
          d[j] = reinterpret_cast<const BlockQ4_0*>(row)[b].d;
        }
      }
      uint8_t* codes = c + packed_chunk_bytes(f) - 64 * f.bits;
      if (f.bits == 8) {
        for (int i = 0; i < QK; ++i) codes[(i / 4) * 64 + 4 * j + i % 4] = u[i];
      } else {
        for (int p = 0; p < 4; ++p)
          for (int k = 0; k < 4; ++k)
            codes[p * 64 + 4 * j + k] = uint8_t((u[8 * p + k] & 0xF) | (u[8 * p + 4 + k] & 0xF) << 4);
        for (int bit = 4; bit < f.bits; ++bit)
          for (int i = 0; i < QK; ++i)
            codes[256 + 64 * (bit - 4) + 4 * j + i % 4] |= uint8_t(((u[i] >> bit) & 1) << (i / 4));
      }
    }
  }
}

void pack_weight(uint8_t* out, const void* w, DType type, int N, int K, int n_threads) {
  parallel_for((N + 15) / 16, n_threads, 1, [&](int g0, int g1) {
    for (int g = g0; g < g1; ++g) pack_group(out, w, type, N, K, g);
  });
}

}  // namespace nextoken
