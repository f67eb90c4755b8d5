#pragma once
// A single-producer single-consumer ring of floats: the audio callback hands samples to a file thread (or takes
// them from one) without a lock or an allocation. Capacity is fixed at construction.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ssm::denoise {

class SpscRing {
public:
    explicit SpscRing(std::size_t capacity = 0) { reset_capacity(capacity); }

    /** Sizes the ring (rounded up to a power of two). Not thread-safe: call before either side runs. */
    void reset_capacity(std::size_t capacity) {
        std::size_t c = 1;
        while (c < capacity) c <<= 1;
        buf_.assign(capacity ? c : 0, 0.0f);
        mask_ = capacity ? c - 1 : 0;
        head_.store(0, std::memory_order_relaxed);
        tail_.store(0, std::memory_order_relaxed);
    }
    std::size_t capacity() const noexcept { return buf_.size(); }

    /** Producer: copies up to `n` samples in; returns how many fit. Real-time safe. */
    std::size_t push(const float* src, std::size_t n) noexcept {
        const std::uint64_t head = head_.load(std::memory_order_relaxed);
        const std::uint64_t tail = tail_.load(std::memory_order_acquire);
        const std::size_t room = buf_.size() - static_cast<std::size_t>(head - tail);
        n = std::min(n, room);
        for (std::size_t i = 0; i < n; ++i) buf_[(head + i) & mask_] = src[i];
        head_.store(head + n, std::memory_order_release);
        return n;
    }
    /** Consumer: copies up to `n` samples out; returns how many there were. Real-time safe. */
    std::size_t pop(float* dst, std::size_t n) noexcept {
        const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
        const std::uint64_t head = head_.load(std::memory_order_acquire);
        n = std::min(n, static_cast<std::size_t>(head - tail));
        for (std::size_t i = 0; i < n; ++i) dst[i] = buf_[(tail + i) & mask_];
        tail_.store(tail + n, std::memory_order_release);
        return n;
    }
    std::size_t readable() const noexcept {
        return static_cast<std::size_t>(head_.load(std::memory_order_acquire) - tail_.load(std::memory_order_acquire));
    }

private:
    std::vector<float> buf_;
    std::size_t mask_ = 0;
    alignas(64) std::atomic<std::uint64_t> head_{0};
    alignas(64) std::atomic<std::uint64_t> tail_{0};
};

}  // namespace ssm::denoise
