// no_cuda.cpp: cuda.h in a build without CUDA (CMakeLists.txt compiles it instead of the .cu files): no
// devices, and every op a clear Error, so that the code calling them builds and links the same either way.
// Nothing reaches the ops: a model or op asked to run on "cuda" is refused first (device_count() is 0).
#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

[[noreturn]] void absent() {
  throw Error("this build of nextoken has no CUDA kernels (no CUDA compiler was found when it was built)");
}

}  // namespace

bool built() { return false; }
int device_count() { return 0; }
std::string device_name(int) { absent(); }
void check_launch(const char*) { absent(); }
void* alloc(size_t) { absent(); }
void free(void*) {}
void copy(void*, const void*, size_t) { absent(); }
Buffer::Buffer(size_t, const void*) { absent(); }
Buffer::~Buffer() {}
void Buffer::to_host(void*) const { absent(); }
void matmul(float*, const float*, const void*, DType, int, int, int) { absent(); }
void rmsnorm(float*, const float*, const float*, int, int, float) { absent(); }
void layernorm(float*, const float*, const float*, const float*, int, int, float) { absent(); }
void rope(float*, const float*, const float*, int, int, int, bool) { absent(); }
void activation(float*, const float*, const float*, int64_t, Activation) { absent(); }
void add_inplace(float*, const float*, int64_t) { absent(); }
void embedding(float*, const int32_t*, int, const void*, DType, int) { absent(); }
void scale_inplace(float*, float, int64_t) { absent(); }
void softcap(float*, float, int64_t) { absent(); }
void add_bias(float*, const float*, int, int) { absent(); }
void store_kv_rows(void*, const float*, int, size_t, int, DType) { absent(); }
size_t attention_scratch_floats(const AttentionSeq*, int, int, int) { return 0; }
void attention(float*, const float*, const AttentionSeq*, int, int, int, int, float, int, const float*, int, DType,
               float*) {
  absent();
}

}  // namespace cuda
}  // namespace nextoken
