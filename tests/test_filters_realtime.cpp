// A designed filter's stream is real-time safe: no heap allocation inside Stream::process, counted by replacing
// operator new and (outside ASan, which owns malloc) malloc/calloc/realloc in this binary (as test_realtime.cpp).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "support.hpp"

#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
void note() {
    if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

void* operator new(std::size_t n) {
    note();
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
    note();
    if (void* p = std::aligned_alloc(static_cast<std::size_t>(a), (n + static_cast<std::size_t>(a) - 1) / static_cast<std::size_t>(a) * static_cast<std::size_t>(a))) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

#if !defined(__SANITIZE_ADDRESS__)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* malloc(std::size_t n) {
    note();
    return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
    note();
    return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
    note();
    return __libc_realloc(p, n);
}
}
constexpr bool counts_malloc = true;
#else
constexpr bool counts_malloc = false;
#endif

using namespace ssm;
using namespace ssm::test;

TEST(SosRealTime, CounterSeesAllocations) {
    counting = true;
    allocations = 0;
    auto* v = new std::vector<int>(100);
    void* p = counts_malloc ? std::malloc(10) : nullptr;
    counting = false;
    delete v;
    std::free(p);
    EXPECT_GE(allocations.load(), counts_malloc ? 3 : 2);
}

TEST(SosRealTime, StreamProcessDoesNotAllocate) {
    const FilterSpec bp{.family = FilterFamily::butterworth, .type = FilterType::bandpass, .order = 8, .sample_rate = 250,
                        .low = 0.5, .high = 40};
    const FilterSpec comb{.family = FilterFamily::notch, .sample_rate = 1000, .notch_hz = 50, .q = 30, .harmonics = 5};
    for (const auto& spec : {bp, comb}) {
        for (std::size_t channels : {1u, 3u}) {
            const auto m = design(spec, channels);
            Stream s(m, NonFinitePolicy::reset_state);
            s.prepare({spec.sample_rate, 256, 0});
            auto in = random_signal(4096, channels, 1);
            in[100] = NAN;  // the non-finite path too
            std::vector<float> out(in.size());
            counting = true;
            allocations = 0;
            for (std::size_t block : {1u, 7u, 64u, 256u, 1000u}) {  // 1000 > max_block: split internally
                for (std::size_t t = 0; t + block <= 4096; t += block)
                    s.process(in.data() + t * channels, out.data() + t * channels, block);
            }
            s.reset();
            s.process(in.data(), out.data(), 256);
            counting = false;
            EXPECT_EQ(allocations.load(), 0) << channels << " channel(s)";
        }
    }
}
