// A designed filter's stream is real-time safe: no heap allocation inside Stream::process, counted by replacing
// operator new and (outside ASan, which owns malloc) malloc/calloc/realloc in this binary (as test_realtime.cpp).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "support.hpp"

#include "alloc_counter.hpp"  // this binary's one counting allocation hook

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
