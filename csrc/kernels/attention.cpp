// attention.cpp: fused causal attention over the KV cache, CPU, compiled once per ISA.
//
// H = query heads, H_kv = key/value heads, D = head dim (at most 256; fastest a multiple of 16), S = cache
// capacity. Every query row is reduced alone, in segments of its keys merged in a fixed order, whatever
// the other rows of the call and however the work is split: a token decoded through the cache gets
// exactly the output it gets inside a prefill or a batch of other sequences.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../parallel.h"
#include "isa_kernels.h"
#include "simd.h"

namespace nextoken {
namespace NT_ISA {
namespace {

constexpr int KEY_BLOCK = 32;      // keys scored together before the running softmax is rescaled
constexpr int SEGMENT_KEYS = 256;  // keys reduced alone before the segments of a row are merged
constexpr int MAX_GROUP = 16;      // query heads that share one pass over a segment's keys

// Vector i (elements VL i .. VL i + VL - 1) and element i of a key or value row as stored in the cache.
template <DType KV>
inline vfloat row_vector(const uint8_t* row, int i) {
  if constexpr (KV == DType::F32) {
    return loadv(reinterpret_cast<const float*>(row) + VL * i);
  } else if constexpr (KV == DType::F16) {
    return loadv_f16(reinterpret_cast<const uint16_t*>(row) + VL * i);
  } else if constexpr (KV == DType::BF16) {
    return loadv_bf16(reinterpret_cast<const uint16_t*>(row) + VL * i);
  } else {  // Q8_0: blocks of an f16 scale and 32 int8; a vector lies within one block (VL divides 32)
    const uint8_t* block = row + size_t(VL * i / QK) * 34;
    uint16_t d;
    std::memcpy(&d, block, 2);
    return loadv_i8(reinterpret_cast<const int8_t*>(block + 2) + (VL * i) % QK) * half_to_float(d);
  }
}
template <DType KV>
inline float row_value(const uint8_t* row, int i) {
  if constexpr (KV == DType::F32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (KV == DType::F16) {
    return half_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
  } else if constexpr (KV == DType::BF16) {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    const uint8_t* block = row + size_t(i / QK) * 34;
    uint16_t d;
    std::memcpy(&d, block, 2);
    return float(reinterpret_cast<const int8_t*>(block + 2)[i % QK]) * half_to_float(d);
  }
}

// A segment's result for one head: the unnormalised output (D floats), then the running max m and the
// denominator l of its online softmax. partial_floats(D) floats each.
inline int partial_floats(int D) { return D + 2; }

// The scores of keys k[0:nb] (rows rb bytes apart) against HEADS query rows qs[h] (scaled), into s[h][0:nb],
// KEYS keys at a time (HEADS x KEYS = 8): vector i of each query against vector i of each key, 8
// independent chains of DV dependent FMAs that hide one another's latency, reduced together by hsum8.
// Two heads share every key vector loaded. A short last step repeats its first key in the unused places.
// Each score's arithmetic is the same whatever the other heads and keys.
template <int DV, DType KV, int HEADS>
inline void score_keys(float (*s)[KEY_BLOCK], const float (*qs)[VL * DV], const uint8_t* k, int nb, size_t rb) {
  constexpr int KEYS = 8 / HEADS;
  for (int j = 0; j < nb; j += KEYS) {
    const int keys = std::min(KEYS, nb - j);
    const uint8_t* key[KEYS];
    for (int r = 0; r < KEYS; ++r) key[r] = k + size_t(j + (r < keys ? r : 0)) * rb;
    vfloat dot[8];
    for (int h = 0; h < HEADS; ++h) {
      const vfloat q0 = loadv(qs[h]);
      for (int r = 0; r < KEYS; ++r) dot[h * KEYS + r] = q0 * row_vector<KV>(key[r], 0);
    }
    for (int i = 1; i < DV; ++i) {
      vfloat kv[KEYS];
      for (int r = 0; r < KEYS; ++r) kv[r] = row_vector<KV>(key[r], i);
      for (int h = 0; h < HEADS; ++h) {
        const vfloat qi = loadv(qs[h] + VL * i);
        for (int r = 0; r < KEYS; ++r) dot[h * KEYS + r] += qi * kv[r];
      }
    }
    alignas(32) float sums[8];
    hsum8(sums, dot);
    for (int h = 0; h < HEADS; ++h)
      for (int r = 0; r < keys; ++r) s[h][j + r] = sums[h * KEYS + r];
  }
}

// out[h] (D = VL DV floats, rows stride floats apart) = out[h] * correction[h] + sum over keys j of
// s[h][j] v[j], for HEADS heads, CHUNK vectors of the row at a time; two heads share every value vector
// loaded. Each output element adds the keys one by one, in order, into one accumulator: the same
// arithmetic whatever the other heads.
template <int DV, DType KV, int HEADS, int CHUNK>
inline void accumulate_values(float* out, size_t stride, const float (*s)[KEY_BLOCK], const float* correction,
                              const uint8_t* v, int nb, size_t rb) {
  for (int c0 = 0; c0 < DV; c0 += CHUNK) {
    vfloat acc[HEADS][CHUNK];
    for (int h = 0; h < HEADS; ++h)
      for (int i = 0; i < CHUNK; ++i) acc[h][i] = loadv(out + h * stride + VL * (c0 + i)) * correction[h];
    for (int j = 0; j < nb; ++j) {
      const uint8_t* vj = v + size_t(j) * rb;
      vfloat p[HEADS];
      for (int h = 0; h < HEADS; ++h) p[h] = splat(s[h][j]);
      for (int i = 0; i < CHUNK; ++i) {
        const vfloat value = row_vector<KV>(vj, c0 + i);
        for (int h = 0; h < HEADS; ++h) acc[h][i] += p[h] * value;
      }
    }
    for (int h = 0; h < HEADS; ++h)
      for (int i = 0; i < CHUNK; ++i) storev(out + h * stride + VL * (c0 + i), acc[h][i]);
  }
}

// The largest divisor of DV that is at most `most`.
constexpr int chunk_of(int DV, int most) {
  int c = most < DV ? most : DV;
  while (DV % c != 0) --c;
  return c;
}

// One segment of keys, k[0:n] and v[0:n], for the G <= MAX_GROUP query heads q[0:G] (rows D apart) that
// share them (a GQA group): partial[g] = softmax state of scale * k q[g] + bias[g] over the segment (bias[g] may be
// null). Online softmax (Milakov & Gimelshein): a running max m, running denominator l, and the output
// accumulator rescaled by e^(m_old - m_new) whenever a block of keys raises the max. Each block of keys
// is read from memory once and used by every head of the group from L1, heads two at a time (each key
// and value vector loaded feeds both); each head's arithmetic is the same, in the same order, whatever G
// is. DV = D / VL vectors per head row is a template parameter so that the output rows being summed live
// in registers: 4 vectors of each of two heads, or 8 of a head left alone (as many FMA chains as hide
// their latency; a row of fewer vectors has fewer).
template <int DV, DType KV>
void attend_segment(float* partial, const float* q, int G, float scale, const uint8_t* k, const uint8_t* v, int n,
                    const float* const* bias, int) {
  constexpr int D = VL * DV;
  const size_t rb = kv_row_bytes(KV, D);
  const size_t stride = size_t(partial_floats(D));  // head g's output row, then its m and l, at partial + g stride
  alignas(64) float s[MAX_GROUP][KEY_BLOCK];
  alignas(64) float q_scaled[MAX_GROUP][D];
  for (int g = 0; g < G; ++g) {
    float* state = partial + g * stride;
    for (int i = 0; i < D; ++i) state[i] = 0.0f;
    state[D] = -INFINITY;
    state[D + 1] = 0.0f;
    for (int i = 0; i < DV; ++i) storev(q_scaled[g] + VL * i, loadv(q + size_t(g) * D + VL * i) * scale);
  }
  float correction[MAX_GROUP];
  for (int j0 = 0; j0 < n; j0 += KEY_BLOCK) {
    const int nb = std::min(KEY_BLOCK, n - j0);
    const uint8_t *kb = k + size_t(j0) * rb, *vb = v + size_t(j0) * rb;
    int g = 0;
    for (; g + 2 <= G; g += 2) score_keys<DV, KV, 2>(s + g, q_scaled + g, kb, nb, rb);
    if (g < G) score_keys<DV, KV, 1>(s + g, q_scaled + g, kb, nb, rb);
    for (g = 0; g < G; ++g) {
      float *sg = s[g], *state = partial + g * stride;
      if (bias[g])
        for (int j = 0; j < nb; ++j) sg[j] += bias[g][j0 + j];
      // The block's max and sum a vector at a time (a scalar loop is a chain of 32 dependent steps, per
      // block and head); the missing keys of a short block are -inf, so e^(s - m) = 0 adds nothing.
      for (int j = nb; j < KEY_BLOCK; ++j) sg[j] = -INFINITY;
      vfloat top = loadv(sg);
      for (int j = VL; j < KEY_BLOCK; j += VL) {
        const vfloat x = loadv(sg + j);
        top = x > top ? x : top;
      }
      float block_max = top[0];
      for (int i = 1; i < VL; ++i) block_max = std::max(block_max, top[i]);
      const float m = state[D], m_new = std::max(m, block_max);
      correction[g] = std::exp(m - m_new);  // 0 on the first block (m = -inf)
      vfloat total = {};
      for (int j = 0; j < KEY_BLOCK; j += VL) {
        const vfloat e = expv(loadv(sg + j) - m_new);
        storev(sg + j, e);
        total += e;
      }
      state[D + 1] = state[D + 1] * correction[g] + hsum(total);
      state[D] = m_new;
    }
    for (g = 0; g + 2 <= G; g += 2)
      accumulate_values<DV, KV, 2, chunk_of(DV, 4)>(partial + g * stride, stride, s + g, correction + g, vb, nb, rb);
    if (g < G)
      accumulate_values<DV, KV, 1, chunk_of(DV, 8)>(partial + g * stride, stride, s + g, correction + g, vb, nb, rb);
  }
}

// The same for head dims that are not a multiple of 16 (tiny models), a float at a time, a head at a time.
template <DType KV>
void attend_segment_any(float* partial, const float* q, int G, float scale, const uint8_t* k, const uint8_t* v, int n,
                        const float* const* bias, int D) {
  const size_t rb = kv_row_bytes(KV, D);
  for (int g = 0; g < G; ++g) {
    const float* qg = q + size_t(g) * D;
    float* acc = partial + size_t(g) * partial_floats(D);
    float s[KEY_BLOCK];
    float m = -INFINITY, l = 0.0f;
    for (int i = 0; i < D; ++i) acc[i] = 0.0f;
    for (int j0 = 0; j0 < n; j0 += KEY_BLOCK) {
      const int nb = std::min(KEY_BLOCK, n - j0);
      float block_max = -INFINITY;
      for (int j = 0; j < nb; ++j) {
        const uint8_t* kj = k + size_t(j0 + j) * rb;
        float dot = 0.0f;
        for (int i = 0; i < D; ++i) dot += qg[i] * scale * row_value<KV>(kj, i);
        s[j] = bias[g] ? dot + bias[g][j0 + j] : dot;
        block_max = std::max(block_max, s[j]);
      }
      const float m_new = std::max(m, block_max), correction = std::exp(m - m_new);
      float block_sum = 0.0f;
      for (int j = 0; j < nb; ++j) block_sum += s[j] = std::exp(s[j] - m_new);
      l = l * correction + block_sum;
      for (int i = 0; i < D; ++i) acc[i] *= correction;
      for (int j = 0; j < nb; ++j)
        for (int i = 0; i < D; ++i) acc[i] += s[j] * row_value<KV>(v + size_t(j0 + j) * rb, i);
      m = m_new;
    }
    acc[D] = m;
    acc[D + 1] = l;
  }
}

using AttendSegment = void (*)(float*, const float*, int, float, const uint8_t*, const uint8_t*, int,
                               const float* const*, int);

// The instantiation for head dim D (at most 256; vectorised for multiples of 16) and cache type KV.
template <DType KV>
AttendSegment attend_segment_for(int D) {
  if (D % 16 != 0) return attend_segment_any<KV>;
  constexpr int U = 16 / VL;  // vectors per 16 floats
  static constexpr AttendSegment table[16] = {
      attend_segment<1 * U, KV>,  attend_segment<2 * U, KV>,  attend_segment<3 * U, KV>,  attend_segment<4 * U, KV>,
      attend_segment<5 * U, KV>,  attend_segment<6 * U, KV>,  attend_segment<7 * U, KV>,  attend_segment<8 * U, KV>,
      attend_segment<9 * U, KV>,  attend_segment<10 * U, KV>, attend_segment<11 * U, KV>, attend_segment<12 * U, KV>,
      attend_segment<13 * U, KV>, attend_segment<14 * U, KV>, attend_segment<15 * U, KV>, attend_segment<16 * U, KV>};
  return table[D / 16 - 1];
}

// out (D) = softmax over all of a head's segments: their partials (stride floats apart) merged in order,
// each rescaled to the overall max (one segment: its output over its l, nothing rescaled).
void combine_segments(float* out, const float* partial, int n_segments, size_t stride, int D) {
  if (n_segments == 1) {
    const float inv_l = 1.0f / partial[D + 1];
    for (int i = 0; i < D; ++i) out[i] = partial[i] * inv_l;
    return;
  }
  float m = -INFINITY, l = 0.0f;
  for (int s = 0; s < n_segments; ++s) m = std::max(m, partial[s * stride + size_t(D)]);
  for (int i = 0; i < D; ++i) out[i] = 0.0f;
  for (int s = 0; s < n_segments; ++s) {
    const float* p = partial + s * stride;
    const float w = std::exp(p[D] - m);
    l += p[D + 1] * w;
    for (int i = 0; i < D; ++i) out[i] += p[i] * w;
  }
  const float inv_l = 1.0f / l;
  for (int i = 0; i < D; ++i) out[i] *= inv_l;
}

// The first key a query at position p sees: 0, or with a sliding window of W the last W positions.
inline int first_key(int p, int window) { return window > 0 && p >= window ? p - window + 1 : 0; }

}  // namespace

void attention(float* out, const float* q, const AttentionSeq* seqs, int n_seqs, int H, int H_kv, int D, float scale,
               int window, const float* rel_bias, int rel_span, DType kv_type, int n_threads) {
  const int group = H / H_kv;
  const AttendSegment attend = kv_type == DType::F16    ? attend_segment_for<DType::F16>(D)
                               : kv_type == DType::BF16 ? attend_segment_for<DType::BF16>(D)
                               : kv_type == DType::Q8_0 ? attend_segment_for<DType::Q8_0>(D)
                                                        : attend_segment_for<DType::F32>(D);
  const size_t row_bytes = kv_row_bytes(kv_type, D);
  const size_t per_head = size_t(partial_floats(D)), per_group = per_head * size_t(group);
  // first_row[s]: the index of sequence s's first query row among all rows.
  int first_row[MAX_ATTENTION_SEQS + 1];
  first_row[0] = 0;
  for (int s = 0; s < n_seqs; ++s) first_row[s + 1] = first_row[s] + seqs[s].T;
  const int n_rows = first_row[n_seqs];
  struct Keys {
    const AttentionSeq* seq;
    int p, first, last, n_segments;
  };
  const auto keys_of = [&](int row) {
    const int s = int(std::upper_bound(first_row, first_row + n_seqs + 1, row) - first_row) - 1;
    const AttentionSeq& seq = seqs[s];
    const int p = seq.pos0 + row - first_row[s];
    const int first = seq.n_keys > 0 ? 0 : first_key(p, window), last = seq.n_keys > 0 ? seq.n_keys - 1 : p;
    return Keys{&seq, p, first, last, (last - first) / SEGMENT_KEYS + 1};
  };
  // Segment `segment` of row `row`'s keys for query heads [g_begin, g_end) of key/value head `kv_head`'s
  // group (g_begin even: attend_segment pairs the heads from the first, so they pair as in the whole group).
  const auto run_segment = [&](float* partial, int row, int kv_head, const Keys& keys, int segment, int g_begin,
                               int g_end) {
    const int first = keys.first + segment * SEGMENT_KEYS, n = std::min(SEGMENT_KEYS, keys.last + 1 - first);
    const size_t offset = (size_t(kv_head) * keys.seq->S + first) * row_bytes;
    for (int g0 = g_begin; g0 < g_end; g0 += MAX_GROUP) {
      const int G = std::min(MAX_GROUP, g_end - g0);
      const float* bias[MAX_GROUP] = {};
      for (int g = 0; rel_bias && g < G; ++g) {  // T5's bias of key j for the query at p: rel_bias[h][(j - p) + span - 1]
        const int h = kv_head * group + g0 + g;
        bias[g] = rel_bias + size_t(h) * (2 * rel_span - 1) + (rel_span - 1) - keys.p + first;
      }
      attend(partial + size_t(g0) * per_head, q + (size_t(row) * H + size_t(kv_head) * group + g0) * D, G, scale,
             static_cast<const uint8_t*>(keys.seq->k) + offset, static_cast<const uint8_t*>(keys.seq->v) + offset, n,
             bias, D);
    }
  };
  // A row's keys go in segments of SEGMENT_KEYS from its first key, each reduced alone and then merged in
  // order: a row's output depends on its keys alone, not on how the work was split. With few rows
  // (decode) the segments are spread over the threads (split-K, so that every thread works whatever the
  // head count); with many, each (row, key/value head) goes to one thread, which runs its segments in turn.
  // Items go key/value head by head, so that the threads share one head's keys and values while they
  // stay in L2 (alternating heads, a 512-token prefill of 3 heads reads 768 KB round and round), and
  // within a head last rows first: in a causal prefill a row's cost grows with its position, and the
  // pool's threads claim chunks in order, so the cheap chunks left at the end even out the threads'
  // shares (first rows first, the costliest chunk came last and ran on one thread alone: a 512-token,
  // 9-head prefill on 2 threads of an AVX2 EPYC took ~7.3 ms, last rows first ~6.4).
  const int n_items = n_rows * H_kv;
  if (n_items >= 4 * n_threads) {
    parallel_for(n_items, n_threads, 1, [&](int begin, int end) {
      std::vector<float> partial;
      for (int i = begin; i < end; ++i) {
        const int kv_head = i / n_rows, row = n_rows - 1 - i % n_rows;
        const Keys keys = keys_of(row);
        partial.resize(size_t(keys.n_segments) * per_group);
        for (int segment = 0; segment < keys.n_segments; ++segment)
          run_segment(partial.data() + size_t(segment) * per_group, row, kv_head, keys, segment, 0, group);
        for (int g = 0; g < group; ++g)
          combine_segments(out + (size_t(row) * H + size_t(kv_head) * group + g) * D, partial.data() + g * per_head,
                           keys.n_segments, per_group, D);
      }
    });
    return;
  }
  std::vector<int> first_segment(size_t(n_rows) + 1, 0);  // of each row, counting every row's segments
  for (int row = 0; row < n_rows; ++row) first_segment[size_t(row) + 1] = first_segment[size_t(row)] + keys_of(row).n_segments;
  const int n_segments = first_segment[size_t(n_rows)];
  std::vector<float> partial(size_t(n_segments) * H_kv * per_group);  // (segment, kv head, head in group)
  // A unit is a segment of one key/value head for its whole group of query heads. With fewer units than
  // twice the threads (a decode step within 256 tokens: Gemma 3 has one key/value head, so one thread did
  // all the work while the other waited), each unit is split into items of two query heads, so that every
  // thread takes a share; these are the pairs attend_segment makes of the whole group, so the same bits.
  const int heads_per_item = n_threads > 1 && n_segments * H_kv < 2 * n_threads ? 2 : group;
  const int items_per_unit = (group + heads_per_item - 1) / heads_per_item;
  parallel_for(n_segments * H_kv * items_per_unit, n_threads, 1, [&](int begin, int end) {
    for (int item = begin; item < end; ++item) {
      const int unit = item / items_per_unit, part = item % items_per_unit;
      const int segment = unit / H_kv, kv_head = unit % H_kv;
      const int row = int(std::upper_bound(first_segment.begin(), first_segment.end(), segment) - first_segment.begin()) - 1;
      run_segment(partial.data() + size_t(unit) * per_group, row, kv_head, keys_of(row), segment - first_segment[size_t(row)],
                  part * heads_per_item, std::min(group, (part + 1) * heads_per_item));
    }
  });
  for (int row = 0; row < n_rows; ++row)
    for (int h = 0; h < H; ++h)
      combine_segments(out + (size_t(row) * H + h) * D,
                       partial.data() + (size_t(first_segment[size_t(row)]) * H_kv + size_t(h / group)) * per_group +
                           size_t(h % group) * per_head,
                       first_segment[size_t(row) + 1] - first_segment[size_t(row)], size_t(H_kv) * per_group, D);
}

}  // namespace NT_ISA
}  // namespace nextoken
