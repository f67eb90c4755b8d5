#include "ops/thread_pool.hpp"

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

static std::pair<std::size_t, std::size_t> share(std::size_t n, std::size_t parts, std::size_t i) {
    const std::size_t base = n / parts, extra = n % parts;
    const std::size_t b = i * base + std::min(i, extra);
    return {b, b + base + (i < extra ? 1 : 0)};
}

void ThreadPool::parallel_for(std::size_t n, const Job& fn) {
    if (n == 0) return;
    if (workers_.empty() || n == 1) {
        fn(0, n, 0);
        return;
    }
    {
        std::lock_guard lock(mutex_);
        job_ = &fn;
        job_n_ = n;
        pending_ = workers_.size();
        ++generation_;
    }
    wake_.notify_all();
    auto [b, e] = share(n, size(), 0);
    if (b < e) fn(b, e, 0);
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
        const auto* fn = job_;
        const std::size_t n = job_n_;
        lock.unlock();
        auto [b, e] = share(n, size(), index);
        if (b < e) (*fn)(b, e, index);
        lock.lock();
        if (--pending_ == 0) done_.notify_one();
    }
}

}  // namespace ssm::detail
