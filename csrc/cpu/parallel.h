// Runs pieces of work on the calling thread and a persistent pool of worker threads
// (parallel.cpp), degrading to fewer threads when the system refuses to create one (an
// address-space limit, a thread limit). Never aborts, never drops a piece; every piece has
// finished, and its writes are visible to the caller, when run_pieces returns.
#pragma once

#include <stdint.h>

namespace fastrand {

namespace detail {

using PieceCall = void (*)(const void* ctx, uint64_t k);

// run_pieces without the template: call(ctx, k) once for every k in [0, pieces), pieces >= 2.
void run_pieces_erased(uint64_t pieces, PieceCall call, const void* ctx) noexcept;

}  // namespace detail

// Calls work(k) once for every k in [0, pieces): piece 0 on the calling thread, the others on
// the pool's workers or, where no worker takes them first (none could be created, none woke in
// time), on the calling thread too. A caller that finds the pool in use by another thread runs
// its pieces on threads of its own, started for the call. `work` must not throw.
template <class Work>
void run_pieces(uint64_t pieces, const Work& work) {
  if (pieces == 0) return;
  if (pieces == 1) {
    work(0);
    return;
  }
  detail::run_pieces_erased(
      pieces, [](const void* ctx, uint64_t k) { (*static_cast<const Work*>(ctx))(k); }, &work);
}

}  // namespace fastrand
