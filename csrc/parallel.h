// parallel.h: the engine's own thread pool, in place of OpenMP's parallel regions.
//
// Why not OpenMP: a region splits work into one fixed share per thread and joins at a barrier, so when
// the OS gives a thread's core to another process, every thread waits for that share — on a busy 2-core
// machine decoding fell from ~80 tokens/s on one thread to ~14 on two. Here work is cut into several
// chunks per thread that threads claim one at a time; the caller claims chunks too and its join waits for
// chunks, not for threads: a descheduled worker holds up at most the chunk it is in, and one that has not
// woken yet holds up nothing. Idle workers spin briefly (decode steps follow each other within
// microseconds) and then sleep.
//
// Results do not depend on who runs a chunk: callers make every output the work of one chunk, reduced in
// a fixed order, so they stay bitwise identical for any thread count and any timing.
#pragma once

#include <functional>

namespace nextoken {

// fn(begin, end) over consecutive ranges covering [0, n), each of at least `grain` items (but the last),
// on up to n_threads threads including the caller; returns when all are done. Runs on the caller alone
// when n_threads is 1 or n is at most grain. Not for nesting (fn must not call parallel_for).
void parallel_for(int n, int n_threads, int grain, const std::function<void(int, int)>& fn);

// The most threads a caller may ask for: far above any core count we run on, low enough that asking for
// it cannot exhaust a process's thread or memory limits. check_threads throws nextoken::Error outside
// [1, MAX_THREADS].
constexpr int MAX_THREADS = 512;
int check_threads(int n_threads);

}  // namespace nextoken
