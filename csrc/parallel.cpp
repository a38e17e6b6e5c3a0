// parallel.cpp: see parallel.h.
#include "parallel.h"

#include "common.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define NT_PAUSE() _mm_pause()
#else
#define NT_PAUSE() std::this_thread::yield()
#endif

namespace nextoken {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto WORKER_SPIN = std::chrono::microseconds(100);  // then sleep: between two jobs of a decode step
constexpr auto CALLER_SPIN = std::chrono::microseconds(20);   // then yield the core while others finish
constexpr int CHUNKS_PER_THREAD = 4;
constexpr int MAX_CHUNKS = 0xFFFF;

// One job at a time. `claim` packs the job's number (high 32 bits), its chunk count (16) and the next
// unclaimed chunk (16), so a thread can only claim a chunk of the job it read the parameters of.
struct Pool {
  std::mutex job;  // held by the caller for the whole job
  std::atomic<uint64_t> claim{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<int> done{0};   // chunks finished
  std::atomic<int> seats{0};  // workers still wanted by the job
  const std::function<void(int, int)>* fn = nullptr;
  int n = 0, size = 0;
  std::mutex sleep;
  std::condition_variable wake;
  std::atomic<int> sleepers{0};
  int n_workers = 0;

  // Claims and runs chunks of job `gen` until none is left.
  void run_chunks(uint32_t gen) {
    uint64_t v = claim.load(std::memory_order_acquire);
    for (;;) {
      const int index = int(v & 0xFFFF), n_chunks = int((v >> 16) & 0xFFFF);
      if (uint32_t(v >> 32) != gen || index >= n_chunks) return;
      if (!claim.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      const int begin = index * size;  // the job cannot end before this chunk: its parameters stay valid
      (*fn)(begin, std::min(n, begin + size));
      done.fetch_add(1, std::memory_order_release);
      v = claim.load(std::memory_order_acquire);
    }
  }

  void worker(uint32_t seen) {
    for (;;) {
      const Clock::time_point start = Clock::now();
      for (int spins = 1; generation.load(std::memory_order_acquire) == seen; ++spins) {
        NT_PAUSE();
        if (spins % 64 == 0 && Clock::now() - start > WORKER_SPIN) {
          sleepers.fetch_add(1);
          std::unique_lock<std::mutex> lock(sleep);
          wake.wait(lock, [&] { return generation.load() != seen; });
          sleepers.fetch_sub(1);
        }
      }
      seen = generation.load(std::memory_order_acquire);
      if (seats.fetch_sub(1) > 0) run_chunks(seen);
    }
  }

  void grow(int workers) {
    try {
      for (; n_workers < workers; ++n_workers)
        std::thread([this, g = generation.load()] { worker(g); }).detach();  // they live as long as the process
    } catch (const std::system_error&) {
      // The system refused another thread (a limit): go on with those there are; the caller and the
      // workers claim every chunk whatever their number.
    }
  }
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: detached workers may still look at it at exit
  return *p;
}

}  // namespace

int check_threads(int n_threads) {
  NT_CHECK(n_threads >= 1 && n_threads <= MAX_THREADS,
           "n_threads must be in [1, " + std::to_string(MAX_THREADS) + "], got " + std::to_string(n_threads));
  return n_threads;
}

void parallel_for(int n, int n_threads, int grain, const std::function<void(int, int)>& fn) {
  grain = std::max(grain, 1);
  if (n <= 0) return;
  if (n_threads <= 1 || n <= grain) return fn(0, n);
  n_threads = std::min(n_threads, MAX_CHUNKS / CHUNKS_PER_THREAD);
  const int n_chunks_wanted = std::min((n + grain - 1) / grain, n_threads * CHUNKS_PER_THREAD);
  const int size = (n + n_chunks_wanted - 1) / n_chunks_wanted, n_chunks = (n + size - 1) / size;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.job);
  p.grow(n_threads - 1);
  p.fn = &fn;
  p.n = n;
  p.size = size;
  p.done.store(0);
  p.seats.store(n_threads - 1);
  const uint32_t gen = p.generation.load() + 1;
  p.claim.store((uint64_t(gen) << 32) | (uint64_t(n_chunks) << 16), std::memory_order_release);
  p.generation.store(gen);  // seq_cst, paired with the sleepers' count
  if (p.sleepers.load() > 0) {
    std::lock_guard<std::mutex> wake_lock(p.sleep);
    p.wake.notify_all();
  }
  p.run_chunks(gen);
  const Clock::time_point start = Clock::now();
  for (int spins = 1; p.done.load(std::memory_order_acquire) < n_chunks; ++spins) {
    if (spins % 64 == 0 && Clock::now() - start > CALLER_SPIN) std::this_thread::yield();
    else NT_PAUSE();
  }
}

}  // namespace nextoken
