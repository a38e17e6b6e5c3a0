// quantize_weights.cpp: float weights to GGUF blocks (Q8_0, Q4_0, Q4_K), bit for bit as llama.cpp's
// reference quantizers (quantize_row_*_ref in ggml-quants.c) write them, so that a model quantized at load
// or by `nextoken convert` holds exactly what llama.cpp's own quantizer would produce.
//
// To get there every float32 operation runs in the reference's order with its intermediate roundings:
// float32 only, left-to-right sums, ggml's nearest_int (add 1.5 * 2^23), f16 scales rounded to nearest
// even, and no fused multiply-add: contraction of a * b + c into an FMA changes Q4_0's x * id + 8.5 and
// most sums of Q4_K, so it is turned off for this file (here and in CMakeLists.txt).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../parallel.h"
#include "blocks.h"
#include "kernels.h"

#if defined(__FAST_MATH__)
#error "quantize_weights.cpp must not be compiled with -ffast-math: its results would no longer be bit-exact"
#endif
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace nextoken {
namespace {

inline void store_f16(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }  // GGUF is little-endian, as x86

// ggml's nearest_int: adding 1.5*2^23 pushes the value into the binade [2^23, 2^24) where the
// float spacing is 1, so the FPU's round-to-nearest-even does the rounding; the integer is
// then read back from the low mantissa bits.  Exact for |v| <= 2^22 - 1; for other inputs
// (inf/NaN/huge values, which only occur with degenerate data) it returns the same garbage
// as ggml since it is the same bit manipulation (e.g. NaN and +-inf both give 0).
inline int nearest_int(float v) {
    const float t = v + 12582912.f;
    uint32_t i;
    std::memcpy(&i, &t, 4);
    return static_cast<int>(i & 0x007FFFFFu) - 0x00400000;
}

// The reference converts floats to int8_t with a plain C cast, which is undefined when the
// value is out of range.  That happens only when 1/d overflowed to inf (a block whose
// largest magnitude is below ~3.7e-37 for Q8_0, ~2.4e-38 for Q4_0) so that x*id is +-inf or
// NaN.  On x86-64 the cast is cvttss2si, whose result is INT32_MIN there, and the int8 is its
// low byte (0).  We spell that behaviour out so it does not depend on the compiler.
inline uint8_t float_to_int8_bits(float v) {
    int32_t i;
    if (v >= -2147483648.f && v < 2147483648.f) {
        i = static_cast<int32_t>(v);                   // truncation toward zero
    } else {
        i = INT32_MIN;                                 // out of range or NaN
    }
    return static_cast<uint8_t>(static_cast<uint32_t>(i) & 0xFFu);
}

inline int8_t as_int8(uint8_t b) {                     // two's complement reinterpretation
    return static_cast<int8_t>(b >= 128 ? static_cast<int>(b) - 256 : static_cast<int>(b));
}

}  // namespace

// =========================================================================================
// Q8_0: 32 weights per block, d = amax/127 (stored f16), q = round(x/d) as int8.
// Block: f16 d, int8 qs[32]  (34 bytes)
// =========================================================================================
static void quantize_row_q8_0(const float* x, void* out, int64_t n) {
    uint8_t* y = static_cast<uint8_t*>(out);
    const int64_t nb = n / 32;
    for (int64_t ib = 0; ib < nb; ++ib, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; ++j) {
            const float a = std::fabs(x[j]);
            amax = amax > a ? amax : a;                // ggml's MAX(amax, fabsf(v))
        }
        // Note: the quants use the unrounded id = 1/d; only the stored d is rounded to f16.
        const float d  = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(y, f32_to_f16(d));
        for (int j = 0; j < 32; ++j) {
            // roundf: round half away from zero (not to even!)
            y[2 + j] = float_to_int8_bits(std::round(x[j] * id));
        }
    }
}

// =========================================================================================
// Q4_0: 32 weights per block, d = max/-8 where max is the signed value of largest magnitude
// (so that value maps exactly to -8), q = min(15, trunc(x/d + 8.5)).
// Block: f16 d, uint8 qs[16]; byte j = q[j] | q[j+16] << 4  (18 bytes)
// =========================================================================================
static void quantize_row_q4_0(const float* x, void* out, int64_t n) {
    uint8_t* y = static_cast<uint8_t*>(out);
    const int64_t nb = n / 32;
    for (int64_t ib = 0; ib < nb; ++ib, x += 32, y += 18) {
        float amax = 0.0f;
        float max  = 0.0f;
        for (int j = 0; j < 32; ++j) {                 // first element of largest |x| wins
            const float a = std::fabs(x[j]);
            if (amax < a) {
                amax = a;
                max  = x[j];
            }
        }
        const float d  = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        store_f16(y, f32_to_f16(d));
        for (int j = 0; j < 16; ++j) {
            const float x0 = x[j] * id;                // product rounded before the +8.5
            const float x1 = x[j + 16] * id;
            // (int8_t)(v + 8.5f) truncates toward zero; then MIN(15, .) and store as uint8
            int q0 = as_int8(float_to_int8_bits(x0 + 8.5f));
            int q1 = as_int8(float_to_int8_bits(x1 + 8.5f));
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            const uint8_t b0 = static_cast<uint8_t>(q0 & 0xFF);
            const uint8_t b1 = static_cast<uint8_t>(q1 & 0xFF);
            y[2 + j] = static_cast<uint8_t>(b0 | (b1 << 4));
        }
    }
}

// =========================================================================================
// Q4_K: super-blocks of 256 weights = 8 sub-blocks of 32.  Each sub-block j is
// approximated as  x ~= d*sc[j]*q - dmin*m[j]  with q in 0..15, sc/m 6-bit.
// Block (144 bytes): f16 d, f16 dmin, uint8 scales[12], uint8 qs[128].
// =========================================================================================
namespace {

constexpr int NSUB = 8;     // sub-blocks per super-block
constexpr int SUB  = 32;    // values per sub-block

// Marks a loop over the 8 lanes nested in a loop over the 32 elements.  Without it GCC fully
// unrolls the 8-lane loop first and then vectorises the element loop instead, which turns the
// per-lane sums into slow in-order reductions (same results, ~3x slower).  A pure
// optimisation hint: results do not depend on it.
#if defined(__GNUC__) || defined(__clang__)
#define LANES _Pragma("GCC unroll 1")
#else
#define LANES
#endif

// Step 1 of Q4_K for one super-block xb[256]: for every 32-value sub-block s compute the
// importance weights w = rms(sub-block) + |x| and run ggml's
//   make_qkx2_quants(32, 15, x, w, L, &the_min, Laux, rmin=-1.f, rdelta=0.1f, nstep=20, use_mad=false)
// giving scale_out[s], min_out[s] (= the_min >= 0) and the quants L_out[32*s + i] in 0..15.
//
// The fit, per sub-block: model x ~= scale*L + min with L in 0..15 and min <= 0.  Start from
// the plain min/max grid, then try 21 grid densities iscale = (nmax - 1 + 0.1*is)/(max - min),
// each followed by a weighted least-squares refit of (scale, min); the candidate with the
// smallest weighted squared error wins.  Note that when a candidate wins, `min` is replaced by
// the fitted min, and later candidates use that new min both as the grid origin and in
// (max - min).  A constant sub-block (max == min once min is capped at 0, e.g. all zeros)
// returns scale 0, L = 0 and the_min = -min (which is -0.0f for an all-zero sub-block).
//
// Implementation note: the 8 sub-blocks are processed side by side.  x[i][s] is element i of
// sub-block s, and every `for (s ...)` loop performs, for each lane s on its own, exactly the
// float operations of the one-sub-block algorithm in the reference order (sums run over i
// left to right).  Nothing is reordered or shared between lanes, so every lane is bit-identical
// to the scalar reference; the layout only lets the compiler keep the 8 independent lanes in
// one SIMD register.  The quants are held as floats 0..15 inside the fit (exact), and all
// arrays are locals (no aliasing), which keeps these loops vectorisable.
void fit_subblocks_q4k(const float* xb, float scale_out[NSUB], float min_out[NSUB], uint8_t L_out[256]) {
    const int   nmax   = 15;
    const float rmin   = -1.0f;
    const float rdelta = 0.1f;
    const int   nstep  = 20;

    float x[SUB][NSUB];
    float w[SUB][NSUB];
    for (int i = 0; i < SUB; ++i) {
        for (int s = 0; s < NSUB; ++s) x[i][s] = xb[SUB * s + i];
    }

    // weights: av_x = sqrt(sum(x*x)/32), w = av_x + |x|
    float sum_x2[NSUB];
    for (int s = 0; s < NSUB; ++s) sum_x2[s] = 0.0f;
    for (int i = 0; i < SUB; ++i) {
        LANES
        for (int s = 0; s < NSUB; ++s) sum_x2[s] += x[i][s] * x[i][s];
    }
    float av_x[NSUB];
    for (int s = 0; s < NSUB; ++s) av_x[s] = std::sqrt(sum_x2[s] / 32.0f);
    for (int i = 0; i < SUB; ++i) {
        LANES
        for (int s = 0; s < NSUB; ++s) w[i][s] = av_x[s] + std::fabs(x[i][s]);
    }

    // range and weighted sums
    float min[NSUB], max[NSUB], sum_w[NSUB], sum_x[NSUB];
    for (int s = 0; s < NSUB; ++s) {
        min[s]   = x[0][s];
        max[s]   = x[0][s];
        sum_w[s] = w[0][s];
        sum_x[s] = sum_w[s] * x[0][s];
    }
    for (int i = 1; i < SUB; ++i) {
        LANES
        for (int s = 0; s < NSUB; ++s) {
            min[s]    = x[i][s] < min[s] ? x[i][s] : min[s];
            max[s]    = x[i][s] > max[s] ? x[i][s] : max[s];
            sum_w[s] += w[i][s];
            sum_x[s] += w[i][s] * x[i][s];
        }
    }
    bool  flat[NSUB];           // constant sub-block: computed like the others below, result unused
    float min0[NSUB];
    for (int s = 0; s < NSUB; ++s) {
        min[s]  = min[s] > 0 ? 0.0f : min[s];          // the offset is never positive
        flat[s] = max[s] == min[s];
        min0[s] = min[s];
    }

    // Starting point: plain min/max quantisation and its weighted squared error.
    float L[SUB][NSUB];
    float iscale0[NSUB], scale[NSUB], best_error[NSUB];
    for (int s = 0; s < NSUB; ++s) {
        iscale0[s]    = static_cast<float>(nmax) / (max[s] - min[s]);
        scale[s]      = 1.0f / iscale0[s];
        best_error[s] = 0.0f;
    }
    for (int i = 0; i < SUB; ++i) {
        LANES
        for (int s = 0; s < NSUB; ++s) {
            int l = nearest_int(iscale0[s] * (x[i][s] - min[s]));
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            L[i][s] = static_cast<float>(l);
            float diff = scale[s] * L[i][s] + min[s] - x[i][s];
            diff = diff * diff;
            best_error[s] += w[i][s] * diff;
        }
    }

    // Search over 21 grid densities.
    float Laux[SUB][NSUB];
    for (int is = 0; is <= nstep; ++is) {
        // (rmin + rdelta*is) + nmax, evaluated left to right in float
        const float num = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
        float iscale[NSUB], sum_l[NSUB], sum_l2[NSUB], sum_xl[NSUB];
        for (int s = 0; s < NSUB; ++s) {
            iscale[s] = num / (max[s] - min[s]);
            sum_l[s] = sum_l2[s] = sum_xl[s] = 0.0f;
        }
        for (int i = 0; i < SUB; ++i) {
            LANES
            for (int s = 0; s < NSUB; ++s) {
                int l = nearest_int(iscale[s] * (x[i][s] - min[s]));
                l = l < 0 ? 0 : (l > nmax ? nmax : l);
                Laux[i][s] = static_cast<float>(l);
                const float wl = w[i][s] * Laux[i][s];
                sum_l[s]  += wl;
                sum_l2[s] += wl * Laux[i][s];               // (w*l)*l
                sum_xl[s] += wl * x[i][s];                  // (w*l)*x
            }
        }
        // Weighted least squares for x ~= this_scale*l + this_min (only used if D > 0).
        bool  ok[NSUB];
        float this_scale[NSUB], this_min[NSUB], cur_error[NSUB];
        for (int s = 0; s < NSUB; ++s) {
            const float D = sum_w[s] * sum_l2[s] - sum_l[s] * sum_l[s];
            ok[s] = D > 0 && !flat[s];
            float ts = (sum_w[s] * sum_xl[s] - sum_x[s] * sum_l[s]) / D;
            float tm = (sum_l2[s] * sum_x[s] - sum_l[s] * sum_xl[s]) / D;
            if (tm > 0) {                            // offset must be <= 0: refit the scale only
                tm = 0;
                ts = sum_xl[s] / sum_l2[s];
            }
            this_scale[s] = ts;
            this_min[s]   = tm;
            cur_error[s]  = 0.0f;
        }
        for (int i = 0; i < SUB; ++i) {
            LANES
            for (int s = 0; s < NSUB; ++s) {
                float diff = this_scale[s] * Laux[i][s] + this_min[s] - x[i][s];
                diff = diff * diff;
                cur_error[s] += w[i][s] * diff;
            }
        }
        // Keep the candidate if it is strictly better.
        bool take[NSUB];
        for (int s = 0; s < NSUB; ++s) {
            take[s]       = ok[s] && cur_error[s] < best_error[s];
            best_error[s] = take[s] ? cur_error[s]  : best_error[s];
            scale[s]      = take[s] ? this_scale[s] : scale[s];
            min[s]        = take[s] ? this_min[s]   : min[s];
        }
        for (int i = 0; i < SUB; ++i) {
            for (int s = 0; s < NSUB; ++s) L[i][s] = take[s] ? Laux[i][s] : L[i][s];
        }
    }

    for (int s = 0; s < NSUB; ++s) {
        scale_out[s] = flat[s] ? 0.0f : scale[s];
        min_out[s]   = flat[s] ? -min0[s] : -min[s];
        for (int i = 0; i < SUB; ++i) {
            L_out[SUB * s + i] = flat[s] ? 0 : static_cast<uint8_t>(L[i][s]);
        }
    }
}

}  // namespace

static void quantize_row_q4_k(const float* x, void* out, int64_t n) {
    uint8_t* y = static_cast<uint8_t*>(out);
    const int64_t nb = n / 256;

    uint8_t L[256];             // quants in natural order
    float   scales[NSUB];
    float   mins[NSUB];

    for (int64_t ib = 0; ib < nb; ++ib, x += 256, y += 144) {
        uint8_t* const blk_scales = y + 4;
        uint8_t* const blk_qs     = y + 16;

        // 1. Independent (scale, min) fit per 32-value sub-block.
        fit_subblocks_q4k(x, scales, mins, L);

        float max_scale = 0.0f;
        float max_min   = 0.0f;
        for (int j = 0; j < NSUB; ++j) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j]   > max_min)   max_min   = mins[j];
        }

        // 2. Quantise the 8 scales and 8 mins to 6 bits relative to their maxima.  This uses
        //    the unrounded float maxima; d and dmin are rounded to f16 only when stored.
        const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        const float inv_min   = max_min   > 0 ? 63.0f / max_min   : 0.0f;
        for (int j = 0; j < 8; ++j) {
            // uint8 conversion of the int wraps modulo 256 (as in the reference), then clamp.
            uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]) & 0xFF);
            uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min   * mins[j])   & 0xFF);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            // Packing: bytes 0-3 = scale j (low 6 bits), bytes 4-7 = min j, for j < 4;
            // for j >= 4 the low 4 bits of scale/min go to byte j+4 (low/high nibble) and
            // their top 2 bits into the spare top bits of bytes j-4 / j.
            if (j < 4) {
                blk_scales[j]     = ls;
                blk_scales[j + 4] = lm;
            } else {
                blk_scales[j + 4]  = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
                blk_scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
                blk_scales[j]     |= static_cast<uint8_t>((lm >> 4) << 6);
            }
        }
        const uint16_t d16    = f32_to_f16(max_scale / 63.0f);
        const uint16_t dmin16 = f32_to_f16(max_min / 63.0f);
        store_f16(y, d16);
        store_f16(y + 2, dmin16);

        // 3. Re-quantise every value against the scales the decoder will actually see:
        //    d = f16(d)*sc, dm = f16(dmin)*m.  Sub-blocks whose effective scale is exactly
        //    zero (sc == 0 or d rounded to 0 in f16) keep the quants from step 1.
        const float d_all    = f16_to_f32(d16);
        const float dmin_all = f16_to_f32(dmin16);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            blocks::scale_min_k4(j, blk_scales, sc, m);
            const float d = d_all * static_cast<float>(sc);
            if (d == 0.0f) continue;                   // `if (!d)`: NaN does not skip
            const float dm = dmin_all * static_cast<float>(m);
            for (int i = 0; i < 32; ++i) {
                int l = nearest_int((x[32 * j + i] + dm) / d);
                l = l < 0 ? 0 : (l > 15 ? 15 : l);
                L[32 * j + i] = static_cast<uint8_t>(l);
            }
        }

        // 4. Nibble packing: 32-byte chunk c holds sub-block 2c (low) and 2c+1 (high).
        for (int c = 0; c < 4; ++c) {
            const uint8_t* lo = L + 64 * c;
            const uint8_t* hi = lo + 32;
            for (int i = 0; i < 32; ++i) {
                blk_qs[32 * c + i] = static_cast<uint8_t>(lo[i] | (hi[i] << 4));
            }
        }
    }
}

void quantize_rows(void* out, const float* x, int64_t rows, int64_t cols, DType type, int n_threads) {
  const size_t rb = row_bytes(type, cols);
  parallel_for(int(rows), n_threads, 1, [&](int r0, int r1) {  // rows < 2^31: checked by the callers
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* y = static_cast<uint8_t*>(out) + size_t(r) * rb;
      const float* xr = x + size_t(r) * cols;
      if (type == DType::Q8_0) quantize_row_q8_0(xr, y, cols);
      else if (type == DType::Q4_0) quantize_row_q4_0(xr, y, cols);
      else quantize_row_q4_k(xr, y, cols);
    }
  });
}

}  // namespace nextoken
