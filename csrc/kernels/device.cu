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

Buffer::Buffer(size_t bytes, const void* from_host) : bytes_(bytes) {
  check(cudaMalloc(&data_, bytes ? bytes : 1), "allocating device memory");
  if (from_host && bytes) {
    const cudaError_t status = cudaMemcpy(data_, from_host, bytes, cudaMemcpyHostToDevice);
    if (status != cudaSuccess) {
      cudaFree(data_);
      check(status, "copying to the device");
    }
  }
}

Buffer::~Buffer() { cudaFree(data_); }

void Buffer::to_host(void* dst) const {
  if (bytes_) check(cudaMemcpy(dst, data_, bytes_, cudaMemcpyDeviceToHost), "copying to the host");
}

}  // namespace cuda
}  // namespace nextoken
