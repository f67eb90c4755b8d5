// Mamba and Mamba-2 streams are real-time safe: no heap allocation inside Stream::process (projections included:
// Eigen packs them on the stack), counted by replacing operator new and (outside ASan) malloc in this binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "ssmstream/c_api.h"
#include "mamba_support.hpp"

#include "alloc_counter.hpp"  // this binary's one counting allocation hook

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
