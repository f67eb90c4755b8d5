// Stream::process is real-time safe: no heap allocation inside it, counted by replacing operator new and
// (outside ASan, which owns malloc) malloc/calloc/realloc in this test binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ssmstream/c_api.h"
#include "support.hpp"

#include "alloc_counter.hpp"  // this binary's one counting allocation hook

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
