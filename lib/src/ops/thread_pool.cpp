#include "ops/thread_pool.hpp"

#include <algorithm>

namespace ssm::detail {

ThreadPool::ThreadPool(std::size_t threads) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    for (std::size_t i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::drain(std::size_t part) noexcept {
    for (;;) {
        const std::size_t b = next_.fetch_add(job_grain_, std::memory_order_relaxed);
        if (b >= job_n_) return;
        (*job_)(b, std::min(job_n_, b + job_grain_), part);
    }
}

void ThreadPool::parallel_for(std::size_t n, const Job& fn, std::size_t grain) {
    if (n == 0) return;
    if (grain == 0) grain = std::max<std::size_t>(1, (n + size() - 1) / size());
    if (workers_.empty() || n <= grain) {
        fn(0, n, 0);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        job_ = &fn;
        job_n_ = n;
        job_grain_ = grain;
        next_.store(0, std::memory_order_relaxed);
        pending_ = workers_.size();
        ++generation_;
    }
    wake_.notify_all();
    drain(0);
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
}

void ThreadPool::worker(std::size_t index) {
    std::size_t seen = 0;
    for (;;) {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        lock.unlock();
        drain(index);
        lock.lock();
        if (--pending_ == 0) done_.notify_one();
    }
}

}  // namespace ssm::detail
