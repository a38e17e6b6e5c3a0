// main.cpp: every packed weight type through the emulated AVX-512 variant and the baseline one, on random
// weights and activations, tile sizes 4 and 1 (T = 1, 5, 9), 1 and 2 threads: the quantized activations
// and the outputs must be equal bit for bit, as the test suite demands of the variants a CPU can run.
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#define NT_ISA generic
#include "../../csrc/kernels/isa_kernels.h"
#undef NT_ISA
#define NT_ISA avx512_emulated
#include "../../csrc/kernels/isa_kernels.h"

using namespace nextoken;

int main() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.1f);
  std::normal_distribution<float> normal;
  struct Case { DType type; int block_bytes, weights_per_block; std::vector<int> f16_at; };
  const Case cases[] = {{DType::Q4_0, 18, 32, {0}},      {DType::Q4_1, 20, 32, {0, 2}},  {DType::Q5_0, 22, 32, {0}},
                        {DType::Q8_0, 34, 32, {0}},      {DType::Q4_K, 144, 256, {0, 2}}, {DType::Q5_K, 176, 256, {0, 2}},
                        {DType::Q6_K, 210, 256, {208}}};
  int failures = 0;
  for (const Case& c : cases) {
    const int N = 37, K = 512;
    std::vector<uint8_t> raw(size_t(N) * K / c.weights_per_block * c.block_bytes);
    for (auto& v : raw) v = uint8_t(byte(rng));
    for (size_t b = 0; b < raw.size() / c.block_bytes; ++b)
      for (int at : c.f16_at) {
        const uint16_t h = f32_to_f16(scale(rng));
        std::memcpy(&raw[b * c.block_bytes + at], &h, 2);
      }
    std::vector<uint8_t> packed(packed_bytes(c.type, N, K));
    pack_weight(packed.data(), raw.data(), c.type, N, K, 1);
    for (int T : {1, 5, 9}) {
      std::vector<float> x(size_t(T) * K), dx(size_t(T) * K / 32), dx_sx(dx.size());
      for (auto& v : x) v = normal(rng);
      std::vector<int8_t> xq(x.size());
      std::vector<int32_t> sx(dx.size());
      generic::quantize_activations(xq.data(), dx.data(), sx.data(), dx_sx.data(), x.data(), T, K, 1);
      {  // the emulated variant's quantization must match too
        std::vector<int8_t> xq2(xq.size());
        std::vector<float> dx2(dx.size()), dx_sx2(dx.size());
        std::vector<int32_t> sx2(sx.size());
        avx512_emulated::quantize_activations(xq2.data(), dx2.data(), sx2.data(), dx_sx2.data(), x.data(), T, K, 2);
        if (xq2 != xq || dx2 != dx || sx2 != sx || dx_sx2 != dx_sx) {
          ++failures;
          std::printf("%s T=%d: quantize_activations differs\n", dtype_name(c.type), T);
        }
      }
      std::vector<float> want(size_t(T) * N), got(want.size());
      const PackedOut w{want.data(), packed.data(), packed_format(c.type), N}, g{got.data(), packed.data(), packed_format(c.type), N};
      generic::matmul_int8_multi(&w, 1, xq.data(), dx.data(), sx.data(), dx_sx.data(), T, K, 1);
      for (int threads : {1, 2}) {
        std::fill(got.begin(), got.end(), -1.0f);
        avx512_emulated::matmul_int8_multi(&g, 1, xq.data(), dx.data(), sx.data(), dx_sx.data(), T, K, threads);
        const bool same = std::memcmp(want.data(), got.data(), sizeof(float) * want.size()) == 0;
        if (!same) {
          ++failures;
          size_t i = 0;
          while (want[i] == got[i]) ++i;
          std::printf("%s T=%d threads=%d: differs first at %zu: %.9g vs %.9g\n", dtype_name(c.type), T, threads, i,
                      want[i], got[i]);
        }
      }
    }
    std::printf("%s checked\n", dtype_name(c.type));
  }
  std::printf(failures ? "FAILED: %d\n" : "emulated AVX-512 int8 matmul equals the baseline bit for bit\n", failures);
  return failures != 0;
}
