// Runs pieces of work on worker threads and the calling thread, degrading to fewer threads when
// the system refuses to create one (an address-space limit, a thread limit): a piece whose thread
// could not start runs on the calling thread instead. Never aborts, never drops a piece; every
// thread that started is joined before returning.
#pragma once

#include <stdint.h>

#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace fastrand {

// Calls work(k) once for every k in [0, pieces): piece 0 and any piece whose worker could not
// be created on the calling thread, the others on worker threads. `work` must not throw.
template <class Work>
void run_pieces(uint64_t pieces, const Work& work) {
  if (pieces == 0) return;
  std::vector<std::thread> pool;
  uint64_t started_to = 1;  // pieces [1, started_to) have a running worker
  try {
    pool.reserve(pieces - 1);
    for (uint64_t k = 1; k < pieces; ++k) {
      pool.emplace_back([&work, k] { work(k); });
      started_to = k + 1;
    }
  } catch (const std::system_error&) {  // thread creation failed: fewer workers
  } catch (const std::bad_alloc&) {     // no room for the pool itself
  }
  work(0);
  for (uint64_t k = started_to; k < pieces; ++k) work(k);
  for (auto& th : pool) th.join();
}

}  // namespace fastrand
