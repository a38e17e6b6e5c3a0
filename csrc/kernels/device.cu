// device.cu: which GPUs there are, device memory, and CUDA's errors turned into Error.
#include <cuda_runtime.h>

#include "cuda.h"

namespace nextoken {
namespace cuda {
namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

}  // namespace

bool built() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error, report none
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "device properties");
  return prop.name;
}

void check_launch(const char* op) { check(cudaGetLastError(), op); }

void* alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t status = cudaMalloc(&p, bytes ? bytes : 1);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: the device stays usable
    throw Error("CUDA: could not allocate " + std::to_string(bytes) + " bytes of device memory");
  }
  check(status, "allocating device memory");  // an earlier fault, reported here
  return p;
}

void free(void* p) { cudaFree(p); }

void copy(void* dst, const void* src, size_t bytes) {
  if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "copying");
}

Buffer::Buffer(size_t bytes, const void* from_host) : data_(alloc(bytes)), bytes_(bytes) {
  if (!from_host) return;
  try {
    copy(data_, from_host, bytes);
  } catch (...) {
    cuda::free(data_);
    throw;
  }
}

Buffer::~Buffer() { cuda::free(data_); }

void Buffer::to_host(void* dst) const { copy(dst, data_, bytes_); }

}  // namespace cuda
}  // namespace nextoken
