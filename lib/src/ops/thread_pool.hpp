#pragma once
// A fixed pool for Batch: parallel_for over an index range, the caller's thread taking a share. Not used by Stream.
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
    /** Calls fn(begin, end, part) on contiguous parts of [0, n), part < size() naming the thread's share (for
     * per-thread buffers); returns when all are done. */
    using Job = std::function<void(std::size_t, std::size_t, std::size_t)>;
    void parallel_for(std::size_t n, const Job& fn);

private:
    void worker(std::size_t index);
    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const Job* job_ = nullptr;
    std::size_t job_n_ = 0, generation_ = 0, pending_ = 0;
    bool stop_ = false;
};

}  // namespace ssm::detail
