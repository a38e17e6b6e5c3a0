// common.h: what every layer shares: the weight types, the error that reaches Python, f16 conversion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>


// Functions that the CUDA kernels share with the CPU ones (weight decoding): host and device code under
// nvcc, plain functions elsewhere.
#ifdef __CUDACC__
#define NT_HOST_DEVICE __host__ __device__
#else
#define NT_HOST_DEVICE
#endif

namespace nextoken {

// Thrown for anything a user can get wrong (bad shapes, ids, parameters). The binding turns it into
// Python's ValueError; nothing in the core aborts the process on user input.
struct __attribute__((visibility("default"))) Error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define NT_CHECK(cond, msg)                                                     \
  do {                                                                          \
    if (!(cond)) throw ::nextoken::Error(std::string(msg));                     \
  } while (0)

// Weight element types, numbered as GGUF numbers them (ggml_type) so a loader can pass them through.
enum class DType : int {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30
};

// GGUF block layouts (ggml-common.h): QK = 32 weights per block, scales in IEEE half precision.
constexpr int QK = 32;
struct BlockQ4_0 { uint16_t d; uint8_t qs[QK / 2]; };          // w = d * (q - 8)
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[QK / 2]; };       // w = d * q + m
struct BlockQ8_0 { uint16_t d; int8_t qs[QK]; };               // w = d * q
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; };  // w = d * (q - 16), bit 4 of q in qh
// In the 4-bit blocks, byte j holds weight j in its low nibble and weight j + 16 in its high nibble.
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ8_0) == 34 &&
              sizeof(BlockQ5_0) == 22, "GGUF layout");

// K-quants: super-blocks of QK_K = 256 weights in 8 sub-blocks of 32 (Q6_K: 16 groups of 16), each with
// its own scale (and min) quantized against the super-block's d (and dmin). kernels/blocks.h decodes them.
constexpr int QK_K = 256;
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; };
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; };
struct BlockQ6_K { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; };
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210, "GGUF layout");

// The one table of weight types: name, weights per block, bytes per block. Python reads it through
// _core.weight_types(), so no other file repeats it (reference.py decodes the layouts independently).
struct DTypeInfo {
  DType type;
  const char* name;
  int block;
  int block_bytes;
};
constexpr DTypeInfo DTYPES[] = {
    {DType::F32, "F32", 1, 4},          {DType::F16, "F16", 1, 2},           {DType::BF16, "BF16", 1, 2},
    {DType::Q4_0, "Q4_0", QK, sizeof(BlockQ4_0)}, {DType::Q4_1, "Q4_1", QK, sizeof(BlockQ4_1)},
    {DType::Q5_0, "Q5_0", QK, sizeof(BlockQ5_0)}, {DType::Q8_0, "Q8_0", QK, sizeof(BlockQ8_0)},
    {DType::Q4_K, "Q4_K", QK_K, sizeof(BlockQ4_K)}, {DType::Q5_K, "Q5_K", QK_K, sizeof(BlockQ5_K)},
    {DType::Q6_K, "Q6_K", QK_K, sizeof(BlockQ6_K)},
};

inline const DTypeInfo* dtype_info(int t) {
  for (const DTypeInfo& info : DTYPES)
    if (int(info.type) == t) return &info;
  return nullptr;
}
inline bool dtype_known(int t) { return dtype_info(t) != nullptr; }
inline const char* dtype_name(DType t) { return dtype_info(int(t))->name; }
inline int dtype_block(DType t) { return dtype_info(int(t))->block; }
inline bool dtype_is_blocked(DType t) { return dtype_block(t) > 1; }

// Bytes taken by one row of n weights; n must be a multiple of the type's block.
inline size_t row_bytes(DType t, int64_t n) {
  const DTypeInfo* info = dtype_info(int(t));
  return size_t(n / info->block) * size_t(info->block_bytes);
}

// Where a model's weights, caches and activations live: the CPU's memory, or a GPU's (kernels/cuda.h).
enum class Device { CPU, CUDA };

// A feed-forward nonlinearity (kernels.h: activation, gated_activation).
enum class Activation { SiLU, GeluTanh, Gelu, ReLU };

NT_HOST_DEVICE inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE binary16 -> binary32, exact for every input (subnormals, inf, nan included).
NT_HOST_DEVICE inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: renormalise
    int e = -1;
    do { ++e; man <<= 1; } while (!(man & 0x400));
    bits = sign | uint32_t(112 - e) << 23 | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// binary32 -> binary16, round to nearest even (overflow to inf, tiny values to subnormals or zero).
// binary32 -> bfloat16, rounded to nearest even (NaN stays NaN).
NT_HOST_DEVICE inline uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return uint16_t((x >> 16) | 0x40);
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

NT_HOST_DEVICE inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  x &= 0x7fffffff;
  if (x >= 0x7f800000) return uint16_t(sign | 0x7c00 | (x > 0x7f800000 ? 0x200 : 0));  // inf, nan
  if (x >= 0x477ff000) return uint16_t(sign | 0x7c00);                                // rounds past 65504
  if (x < 0x38800000) {  // below the smallest normal half: a subnormal (or zero)
    if (x < 0x33000000) return uint16_t(sign);
    const uint32_t exp = x >> 23, man = (x & 0x7fffff) | 0x800000, shift = 126 - exp;
    uint32_t h = man >> shift;
    const uint32_t rest = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1))) ++h;
    return uint16_t(sign | h);
  }
  uint32_t h = ((x - 0x38000000) >> 13);
  const uint32_t rest = x & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

// Work over several outputs laid end to end (output i has units(i) of them: row tiles, row groups), so
// that products sharing an input are split over the threads in one parallel_for. Calls fn(i, a, b) for
// each range [a, b) of output i that falls in [begin, end).
template <class Units>
inline int total_units(int n_outs, const Units& units) {
  int total = 0;
  for (int i = 0; i < n_outs; ++i) total += units(i);
  return total;
}
template <class Units, class Fn>
inline void for_output_ranges(int n_outs, const Units& units, int begin, int end, const Fn& fn) {
  for (int i = 0, first = 0; i < n_outs && first < end; ++i) {
    const int n = units(i);
    const int a = (begin > first ? begin : first) - first, b = (end < first + n ? end : first + n) - first;
    if (a < b) fn(i, a, b);
    first += n;
  }
}

}  // namespace nextoken
