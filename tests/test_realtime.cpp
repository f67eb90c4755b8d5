// Stream::process is real-time safe: no heap allocation inside it, counted by replacing operator new and
// (outside ASan, which owns malloc) malloc/calloc/realloc in this test binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ssmstream/c_api.h"
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

TEST(RealTime, CounterSeesAllocations) {  // the hook itself works, or the zero below would prove nothing
    counting = true;
    allocations = 0;
    auto* v = new std::vector<int>(100);
    void* p = counts_malloc ? std::malloc(10) : nullptr;
    counting = false;
    delete v;
    std::free(p);
    EXPECT_GE(allocations.load(), counts_malloc ? 3 : 2);
}

TEST(RealTime, StreamProcessDoesNotAllocate) {
    for (bool prenorm : {false, true}) {
        S4DModelSpec spec;
        spec.prenorm = prenorm;
        spec.d_model = 32;
        auto m = make_s4d_model(spec);
        Stream s(m);
        s.prepare({16000, 256, 0});
        auto in = random_signal(4096, 1, 1);
        in[100] = NAN;  // the non-finite path too
        std::vector<float> out(4096);
        counting = true;
        allocations = 0;
        for (std::size_t block : {1u, 7u, 64u, 256u, 1000u}) {  // 1000 > max_block: split internally
            for (std::size_t t = 0; t + block <= 4096; t += block) s.process(in.data() + t, out.data() + t, block);
        }
        s.reset();
        s.process(in.data(), out.data(), 256);
        counting = false;
        EXPECT_EQ(allocations.load(), 0) << "prenorm " << prenorm;
    }
}

TEST(RealTime, CApiProcessDoesNotAllocate) {
    const auto path = write_temp_model({}, "rt.safetensors");
    ssm_status st;
    ssm_model* m = ssm_model_load(path.c_str(), &st);
    ASSERT_NE(m, nullptr) << ssm_last_error();
    auto params = ssm_stream_default_params();
    params.max_block = 128;
    ssm_stream* s = ssm_stream_new(m, params, &st);
    ASSERT_NE(s, nullptr) << ssm_last_error();
    ssm_model_free(m);  // the stream keeps the model alive
    std::vector<float> in(128, 0.25f), out(128);
    counting = true;
    allocations = 0;
    for (int i = 0; i < 100; ++i) ASSERT_EQ(ssm_stream_process(s, in.data(), out.data(), 128), SSM_OK);
    EXPECT_EQ(ssm_stream_process(s, in.data(), out.data(), 129), SSM_ERR_USAGE);
    counting = false;
    EXPECT_EQ(allocations.load(), 0);
    ssm_stream_free(s);
}
