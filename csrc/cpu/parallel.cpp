// The CPU worker pool behind run_pieces (parallel.h).
//
// - One pool a process, created on first use and never destroyed: its workers are detached
//   threads parked on a condition variable, so process exit and interpreter shutdown neither
//   wait for them nor destroy a joinable std::thread.
// - Workers are created lazily, grown to the number a call needs (at most MAX_WORKERS) and
//   reused. A worker that cannot be created (std::system_error, std::bad_alloc: RLIMIT_AS,
//   a thread limit) means fewer workers for that call; the next call tries again.
// - One caller owns the pool at a time. A caller that finds it busy (another Python thread
//   draws at the same moment: the bindings release the GIL) starts threads for its own call,
//   as run_pieces did before the pool; so concurrent callers neither wait for each other nor
//   share pieces.
// - Pieces are claimed from an atomic counter: the caller runs piece 0 and then claims pieces
//   too, so a late worker never delays a call; it only finds nothing left.
// - Wake-up: a condition variable per worker, after a short bounded spin (SPIN_WORKER_US, only
//   workers that fit the processors) that lets back-to-back calls find their workers awake;
//   parked workers burn no CPU.
// - fork(): the child has none of the parent's workers and possibly a locked pool mutex, so a
//   pthread_atfork child handler abandons (leaks) the parent's pool and the child starts an
//   empty one on its first multi-threaded call.
#include "parallel.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace fastrand {
namespace detail {
namespace {

// More workers than this are never kept: larger calls share them (pieces are claimed).
constexpr size_t MAX_WORKERS = 255;

// Threads started for one call and joined before it returns: the path of a caller that finds
// the pool busy. A piece whose thread could not start runs on the calling thread.
void run_spawned(uint64_t pieces, PieceCall call, const void* ctx) {
  std::vector<std::thread> threads;
  uint64_t started_to = 1;  // pieces [1, started_to) have a running thread
  try {
    threads.reserve(pieces - 1);
    for (uint64_t k = 1; k < pieces; ++k) {
      threads.emplace_back([call, ctx, k] { call(ctx, k); });
      started_to = k + 1;
    }
  } catch (const std::system_error&) {  // thread creation failed: fewer threads
  } catch (const std::bad_alloc&) {     // no room for the thread list itself
  }
  call(ctx, 0);
  for (uint64_t k = started_to; k < pieces; ++k) call(ctx, k);
  for (auto& th : threads) th.join();
}

// Bounded spins (microseconds), measured on the 2-core development VM, where a parked thread
// takes 30-50 us to run again after it is woken: a worker that finished a job polls for the
// next one this long before it parks (back-to-back calls find it awake: a 2^17-value draw on 2
// threads took 0.10 ms without it, 0.058 ms with it), and the owner polls this long for the
// workers still inside its job before it sleeps. Idle workers are parked: no CPU between calls.
constexpr long SPIN_WORKER_US = 50;
constexpr long SPIN_OWNER_US = 50;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield");
#endif
}

// Polls done() for up to `us` microseconds; returns early once it holds.
template <class Pred>
void spin_until(long us, const Pred& done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= end) return;
  }
}

struct Worker {
  // Whether this worker spins before it parks: only those that fit the processors beside the
  // owner (more threads than processors would spin against each other and the owner).
  bool spins = false;
  std::condition_variable cv;
  std::atomic<bool> go{false};  // written under Pool::m: a job was posted for this worker
};

class Pool {
 public:
  // Taken (exchange to true) by the caller that runs a job; others find it busy.
  std::atomic<bool> busy{false};

  // The owner's call: the job to every woken worker, piece 0 and unclaimed pieces here, then
  // wait until no worker is inside the job and close it.
  void run(uint64_t pieces, PieceCall call, const void* ctx) {
    const size_t want = pieces - 1 < MAX_WORKERS ? size_t(pieces - 1) : MAX_WORKERS;
    if (workers_.size() < want) grow(want);
    const size_t wake = want < workers_.size() ? want : workers_.size();
    {
      std::lock_guard<std::mutex> lk(m_);
      call_ = call;
      ctx_ = ctx;
      pieces_ = pieces;
      next_.store(1, std::memory_order_relaxed);
      open_ = true;
      for (size_t i = 0; i < wake; ++i) workers_[i]->go.store(true, std::memory_order_relaxed);
    }
    for (size_t i = 0; i < wake; ++i) workers_[i]->cv.notify_one();
    call(ctx, 0);
    for (uint64_t k; (k = next_.fetch_add(1, std::memory_order_relaxed)) < pieces;) call(ctx, k);
    // Every piece is claimed; those claimed by workers finish before their worker leaves the
    // job (under m_, which orders their writes before this thread's return). A worker that
    // wakes after the job is closed finds it closed and touches nothing of it.
    spin_until(SPIN_OWNER_US, [this] { return active_.load(std::memory_order_relaxed) == 0; });
    std::unique_lock<std::mutex> lk(m_);
    idle_cv_.wait(lk, [this] { return active_.load(std::memory_order_relaxed) == 0; });
    open_ = false;
    call_ = nullptr;
    ctx_ = nullptr;
  }

 private:
  // Owner only: adds workers up to `want`; stops at the first one the system refuses.
  void grow(size_t want) {
    while (workers_.size() < want) {
      try {
        workers_.reserve(workers_.size() + 1);  // so that the push_back below cannot throw
        auto w = std::make_unique<Worker>();
        w->spins = workers_.size() + 1 < processors_;
        std::thread th(&Pool::work, this, w.get());
        th.detach();
        workers_.push_back(std::move(w));
      } catch (const std::system_error&) {
        return;
      } catch (const std::bad_alloc&) {
        return;
      }
    }
  }

  // A worker's whole life: park until posted, join the open job, claim pieces until none are
  // left, leave. Never returns (the pool is never destroyed).
  void work(Worker* w) {
#if defined(__linux__)
    pthread_setname_np(pthread_self(), "fastrand-pool");  // as top -H and gdb show it
#endif
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      if (w->spins && !w->go.load(std::memory_order_relaxed)) {
        lk.unlock();
        spin_until(SPIN_WORKER_US, [w] { return w->go.load(std::memory_order_relaxed); });
        lk.lock();
      }
      w->cv.wait(lk, [w] { return w->go.load(std::memory_order_relaxed); });
      w->go.store(false, std::memory_order_relaxed);
      if (!open_) continue;  // posted for a job that finished without this worker
      active_.fetch_add(1, std::memory_order_relaxed);
      const PieceCall call = call_;
      const void* const ctx = ctx_;
      const uint64_t pieces = pieces_;
      lk.unlock();
      for (uint64_t k; (k = next_.fetch_add(1, std::memory_order_relaxed)) < pieces;) call(ctx, k);
      lk.lock();
      if (active_.fetch_sub(1, std::memory_order_relaxed) == 1) idle_cv_.notify_one();
    }
  }

  const size_t processors_ = std::thread::hardware_concurrency();  // 0 where unknown: no spins
  std::mutex m_;
  std::condition_variable idle_cv_;  // the owner waits here for active_ == 0
  // Owner only (workers keep their own Worker*; a Worker never moves).
  std::vector<std::unique_ptr<Worker>> workers_;
  // The job, guarded by m_ (next_ is claimed without it).
  PieceCall call_ = nullptr;
  const void* ctx_ = nullptr;
  uint64_t pieces_ = 0;
  bool open_ = false;
  std::atomic<unsigned> active_{0};  // workers inside the job (written under m_)
  std::atomic<uint64_t> next_{0};
};

std::atomic<Pool*> g_pool{nullptr};

Pool* the_pool() noexcept {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return p;
  Pool* fresh = new (std::nothrow) Pool;
  if (fresh == nullptr) return nullptr;
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;  // another thread installed one first
  return p;
}

// In a forked child the parent's workers do not exist and the pool's mutex may be held by a
// thread that does not exist either: abandon the pool (never touched again) without blocking.
void forget_pool_in_child() { g_pool.store(nullptr, std::memory_order_relaxed); }

struct AtForkRegistration {
  AtForkRegistration() { pthread_atfork(nullptr, nullptr, forget_pool_in_child); }
} atfork_registration;

}  // namespace

void run_pieces_erased(uint64_t pieces, PieceCall call, const void* ctx) noexcept {
  Pool* p = the_pool();
  if (p != nullptr && !p->busy.exchange(true, std::memory_order_acquire)) {
    p->run(pieces, call, ctx);
    p->busy.store(false, std::memory_order_release);
    return;
  }
  run_spawned(pieces, call, ctx);
}

}  // namespace detail
}  // namespace fastrand
