#pragma once
// A fixed pool for Batch: parallel_for over an index range, the caller's thread taking a share. Not used by Stream.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ssm::detail {

class ThreadPool {
public:
    explicit ThreadPool(std::size_t threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    std::size_t size() const noexcept { return workers_.size() + 1; }
    /** Calls fn(begin, end, part) on disjoint ranges covering [0, n), each of at most `grain` items (0: n split
     * evenly over the threads), handed out dynamically so a thread that gets less of the CPU (a busy machine)
     * does less of the work. `part` < size() names the calling thread (for per-thread buffers); one thread may
     * be called several times. Returns when all are done. */
    using Job = std::function<void(std::size_t, std::size_t, std::size_t)>;
    void parallel_for(std::size_t n, const Job& fn, std::size_t grain = 0);

private:
    void worker(std::size_t index);
    void drain(std::size_t part) noexcept;
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const Job* job_ = nullptr;
    std::size_t job_n_ = 0, job_grain_ = 1, generation_ = 0, pending_ = 0;
    std::atomic<std::size_t> next_{0};
    bool stop_ = false;
};

/** fn(f0, n) over [0, frames) in pieces of `piece` frames (the last may be shorter), spread over the pool. */
template <class F>
void for_pieces(ThreadPool& pool, std::size_t frames, std::size_t piece, F&& fn) {
    const std::size_t count = (frames + piece - 1) / piece;
    pool.parallel_for(count, [&](std::size_t b, std::size_t e, std::size_t) {
        for (std::size_t p = b; p < e; ++p) fn(p * piece, std::min(frames, p * piece + piece) - p * piece);
    }, 1);
}

}  // namespace ssm::detail
