// Mamba and Mamba-2 streams are real-time safe: no heap allocation inside Stream::process (projections included:
// Eigen packs them on the stack), counted by replacing operator new and (outside ASan) malloc in this binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ssmstream/c_api.h"
#include "mamba_support.hpp"

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

TEST(MambaRealTime, CounterSeesAllocations) {
    counting = true;
    allocations = 0;
    auto* v = new std::vector<int>(100);
    counting = false;
    delete v;
    EXPECT_GE(allocations.load(), 1);
}

TEST(MambaRealTime, StreamProcessDoesNotAllocate) {
    for (const char* family : {"mamba", "mamba2"}) {
        for (std::size_t d_model : {16u, 256u}) {
            MambaSignalSpec spec;
            spec.family = family;
            spec.d_model = d_model;
            spec.d_state = 16;
            spec.head_dim = 64;
            spec.n_groups = 1;
            spec.d_in = 1;
            spec.d_out = 1;
            spec.n_layers = 1;
            if (d_model == 16) spec.head_dim = 8;
            const auto m = make_mamba_signal_model(spec);
            Stream s(m);
            s.prepare({0, 512, 0});
            auto in = random_signal(4096, 1, 1);
            in[100] = NAN;
            std::vector<float> out(4096);
            counting = true;
            allocations = 0;
            for (std::size_t block : {1u, 7u, 64u, 512u, 1000u})
                for (std::size_t t = 0; t + block <= 4096; t += block) s.process(in.data() + t, out.data() + t, block);
            s.reset();
            s.process(in.data(), out.data(), 512);
            counting = false;
            EXPECT_EQ(allocations.load(), 0) << family << " d_model " << d_model;
        }
    }
}

TEST(MambaRealTime, LanguageModelStepDoesNotAllocate) {
    for (const char* name : {"mamba_tiny", "mamba2_tiny", "falcon_mamba_tiny"}) {
        const auto m = load_model(golden_dir() / name);
        Stream s(m);
        s.prepare({0, 64, 0});
        std::vector<float> tokens(256), out(256 * m->info().out_channels);
        for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<float>((i * 7) % 50);
        counting = true;
        allocations = 0;
        for (std::size_t t = 0; t < 64; ++t) s.process(tokens.data() + t, out.data() + t * m->info().out_channels, 1);
        s.process(tokens.data() + 64, out.data() + 64 * m->info().out_channels, 64);
        counting = false;
        EXPECT_EQ(allocations.load(), 0) << name;
    }
}
