// cuda_runtime.h, emulated: enough of CUDA to compile csrc/kernels/*.cu as C++ and run the kernels on the
// CPU, so that their indexing, reductions and synchronisation are checked by the test suite on machines
// without a GPU (tools/cuda_emulated/check.sh; CMake option NEXTOKEN_CUDA=EMULATED). This header is found
// before the real one only in that build.
//
// A launch runs the grid's blocks one after another. The threads of a block are fibers of the calling thread
// (each started on its own stack by setcontext, then switched with _setjmp / _longjmp, which make no system
// call), resumed in turn; each runs until it reaches a barrier (__syncthreads, or a warp shuffle's exchange),
// so a block's threads advance in step as far as the kernels can observe. Device memory (cudaMalloc, below) is
// host memory that host code cannot touch outside a launch or a copy, and what a GPU refuses aborts with a
// message: a launch configuration out of CUDA's limits, a full-mask shuffle or __syncthreads after some of
// the threads returned. Not emulated: timing, memory coherence between blocks (blocks run in turn, so races
// do not show), shared memory's contents before a block writes it, the GPU's own math functions and FMA
// contraction (so bitwise claims between two GPU code paths are checked only for this compiler's rounding).
#pragma once

#include <setjmp.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__ static  // one block at a time: a static is the block's shared memory

using std::max;
using std::min;

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDefault = 4 };
struct cudaDeviceProp {
  char name[256];
};

namespace cuda_emulation {

[[noreturn]] inline void misuse(const char* what) {
  std::fprintf(stderr, "cuda_emulation: %s\n", what);
  std::abort();
}

// Device memory: pages of one reserved range that no host code may touch. The range is readable and writable
// only while a kernel or a copy runs, so host code that reads or writes device memory faults here as it would
// with a GPU. Pages are never handed out twice; freed ones go back to the system.
constexpr size_t ARENA_BYTES = size_t(1) << 40;  // address space, not memory
constexpr size_t PAGE = 4096;
inline char* arena = nullptr;
inline size_t arena_used = 0;
inline std::map<void*, size_t> allocations;  // pointer -> bytes taken (whole pages)

inline void open_device(bool open) {
  if (arena_used && mprotect(arena, arena_used, open ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
    misuse("mprotect failed");
}

}  // namespace cuda_emulation

inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  std::strcpy(prop->name, "CPU emulation (tools/cuda_emulated)");
  return cudaSuccess;
}
// Filled with 0xFF bytes (NaN as floats), so that a read of what no one wrote shows up.
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  using namespace cuda_emulation;
  if (!arena) {
    void* reserved = mmap(nullptr, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserved == MAP_FAILED) return cudaErrorMemoryAllocation;
    arena = static_cast<char*>(reserved);
  }
  const size_t taken = (std::max<size_t>(bytes, 1) + PAGE - 1) / PAGE * PAGE;
  if (taken > ARENA_BYTES - arena_used) return cudaErrorMemoryAllocation;
  *p = arena + arena_used;
  arena_used += taken;
  allocations[*p] = taken;
  open_device(true);
  std::memset(*p, 0xFF, taken);
  open_device(false);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  using namespace cuda_emulation;
  if (!p) return cudaSuccess;  // as CUDA
  const auto it = allocations.find(p);
  if (it == allocations.end()) misuse("cudaFree of a pointer cudaMalloc did not return");
  madvise(p, it->second, MADV_DONTNEED);
  allocations.erase(it);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  cuda_emulation::open_device(true);
  std::memcpy(dst, src, bytes);
  cuda_emulation::open_device(false);
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "out of memory (emulated)"; }

namespace cuda_emulation {

constexpr size_t STACK_BYTES = 64 * 1024;

struct Fiber {
  ucontext_t start;  // its first entry
  jmp_buf resume;    // where it yielded
  dim3 thread;
  int warp = 0, lane = 0;
  bool started = false, done = false;
};

struct Barrier {
  int arrived = 0, generation = 0;
};

// The block being run: its fibers, which one runs, and the barriers of the block and of each warp.
inline jmp_buf scheduler;
inline std::vector<Fiber> fibers;
inline std::vector<std::vector<char>> stacks;  // kept from block to block
inline int current = 0;
inline std::function<void()> body;
inline Barrier block_barrier;
inline std::vector<Barrier> warp_barriers;
inline int block_live = 0;               // fibers of the block that have not returned
inline std::vector<int> warp_live;       // the same per warp
inline std::vector<unsigned char> warp_slots;  // 32 lanes x 8 bytes per warp, for shuffles

}  // namespace cuda_emulation

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cuda_emulation {

inline void yield() {
  if (!_setjmp(fibers[current].resume)) _longjmp(scheduler, 1);
}

inline int live(int warp) { return warp < 0 ? block_live : warp_live[warp]; }  // warp -1: the whole block

// Waits until every live fiber of the group has arrived (those that returned no longer count).
inline void barrier(Barrier& b, int warp) {
  const int generation = b.generation;
  ++b.arrived;
  while (b.generation == generation) {
    if (b.arrived >= live(warp)) {
      b.arrived = 0;
      ++b.generation;
      break;
    }
    yield();
  }
}

inline void run_fiber() {
  body();
  fibers[current].done = true;
  --block_live;
  --warp_live[fibers[current].warp];
  _longjmp(scheduler, 1);  // never returns: its stack is simply left
}

// A full-mask shuffle needs every lane of the warp, as on a GPU (where a lane that has returned makes it undefined).
template <class T>
T shuffle(T v, int source_of_lane_xor, bool by_xor) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  Fiber& self = fibers[current];
  if (warp_live[self.warp] != 32) misuse("a full-mask warp shuffle after some lanes of the warp returned");
  unsigned char* slots = warp_slots.data() + size_t(self.warp) * 32 * 8;
  std::memcpy(slots + 8 * self.lane, &v, sizeof(T));
  barrier(warp_barriers[self.warp], self.warp);
  const int from = by_xor ? (self.lane ^ source_of_lane_xor) : source_of_lane_xor;
  T out;
  std::memcpy(&out, slots + 8 * from, sizeof(T));
  barrier(warp_barriers[self.warp], self.warp);
  return out;
}

template <class... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  template <class... Args>
  void operator()(Args... args) const {
    const int n = int(block.x * block.y * block.z);
    if (n % 32 != 0) throw std::logic_error("cuda_emulation: blocks of whole warps only");
    if (grid.y > 65535 || grid.z > 65535 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0)
      misuse("a launch configuration a GPU refuses (grid.y, grid.z <= 65535, at most 1024 threads, no empty grid)");
    gridDim = grid;
    blockDim = block;
    open_device(true);
    body = [&] { kernel(Params(args)...); };
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          blockIdx = dim3(bx, by, bz);
          fibers.assign(n, Fiber());
          if (int(stacks.size()) < n) stacks.resize(n, std::vector<char>(STACK_BYTES));
          warp_barriers.assign(n / 32, Barrier());
          warp_live.assign(n / 32, 32);
          block_live = n;
          warp_slots.assign(size_t(n) * 8, 0);
          block_barrier = Barrier();
          for (int i = 0; i < n; ++i) {
            Fiber& f = fibers[i];
            f.thread = dim3(i % block.x, i / block.x % block.y, i / (block.x * block.y));
            f.warp = i / 32;
            f.lane = i % 32;
            getcontext(&f.start);
            f.start.uc_stack.ss_sp = stacks[i].data();
            f.start.uc_stack.ss_size = STACK_BYTES;
            f.start.uc_link = nullptr;
            makecontext(&f.start, run_fiber, 0);
          }
          for (bool running = true; running;) {
            running = false;
            for (int i = 0; i < n; ++i) {
              if (fibers[i].done) continue;
              running = true;
              current = i;
              threadIdx = fibers[i].thread;
              if (!_setjmp(scheduler)) {
                if (fibers[i].started) _longjmp(fibers[i].resume, 1);
                fibers[i].started = true;
                setcontext(&fibers[i].start);
              }
            }
          }
        }
    open_device(false);
  }
};

template <class... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block) {
  return Launch<Params...>{kernel, grid, block};
}

}  // namespace cuda_emulation

template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  return cuda_emulation::shuffle(v, lane_mask, true);
}
template <class T>
T __shfl_sync(unsigned, T v, int source_lane) {
  return cuda_emulation::shuffle(v, source_lane, false);
}
inline void __syncthreads() {
  if (cuda_emulation::block_live != int(blockDim.x * blockDim.y * blockDim.z))
    cuda_emulation::misuse("__syncthreads after some threads of the block returned");
  cuda_emulation::barrier(cuda_emulation::block_barrier, -1);
}

#define NT_LAUNCH(kernel, grid, block) ::cuda_emulation::launch(kernel, grid, block)
