// The two views of one model agree: streaming in any block size, batch by FFT or recurrence, in one call or in
// pieces, and a saved state carries a signal across views.
#include <gtest/gtest.h>

#include <cmath>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;

namespace {

// Tolerance of the whole project for streaming vs batch: ≤ 1e-4 × RMS of the signal.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    const double tol = 1e-4 * std::max(rms(a), 1e-3);
    EXPECT_LE(max_abs_diff(a, b), tol) << what << " (rms " << rms(a) << ")";
}

std::vector<float> run_batch(const std::shared_ptr<const Model>& m, const std::vector<float>& in, Backend backend,
                             std::size_t chunk = 1 << 15, std::size_t piece = 0) {
    BatchOptions o;
    o.backend = backend;
    o.chunk_frames = chunk;
    return run_batch_with(m, in, o, piece);
}

}  // namespace

TEST(StreamBlocks, EveryBlockSizeIsBitIdenticalToStepping) {
    for (bool prenorm : {false, true}) {
        S4DModelSpec spec;
        spec.prenorm = prenorm;
        spec.d_input = 2;
        spec.d_output = 3;
        auto m = make_s4d_model(spec);
        const auto in = random_signal(1000, 2, 7);
        const auto ref = run_stream(m, in, 1);
        for (std::size_t block : {2u, 3u, 17u, 64u, 256u, 1000u, 4096u}) {
            const auto out = run_stream(m, in, block);
            EXPECT_EQ(max_abs_diff(ref, out), 0.0) << "block " << block << " prenorm " << prenorm;
        }
    }
}

TEST(StreamVsBatch, RecurrenceAndFftAgreeForManyLengths) {
    for (const char* disc : {"zoh", "bilinear"}) {
        S4DModelSpec spec;
        spec.disc = disc;
        spec.dt_min = 0.01;  // kernels that decay within a few thousand taps keep the FFT view cheap here
        auto m = make_s4d_model(spec);
        for (std::size_t len : {1u, 2u, 7u, 63u, 1001u, 5000u, 40000u}) {
            const auto in = random_signal(len, 1, static_cast<std::uint32_t>(len));
            const auto ref = run_stream(m, in, 64);
            expect_close(ref, run_batch(m, in, Backend::recurrence), std::string(disc) + " recurrence len " + std::to_string(len));
            expect_close(ref, run_batch(m, in, Backend::fft), std::string(disc) + " fft len " + std::to_string(len));
            // small chunks and odd pieces: every chunk edge is crossed with the state carried
            expect_close(ref, run_batch(m, in, Backend::fft, 1000, 777), std::string(disc) + " fft pieces len " + std::to_string(len));
            expect_close(ref, run_batch(m, in, Backend::recurrence, 333, 1000), std::string(disc) + " rec pieces len " + std::to_string(len));
        }
    }
}

// Short kernels make small FFTs (odd bin counts per channel: every channel's spectrum must stay aligned for FFTW),
// widths that are not a multiple of the 16-channel lanes, thread counts above the core count, and chunks shorter
// than the kernel, so segments read their history from the previous chunks.
TEST(StreamVsBatch, FftShortKernelsOddWidthsAndThreads) {
    for (double dt_min : {0.02, 0.1}) {
        for (std::size_t d_model : {5u, 37u}) {
            for (std::size_t d_state : {2u, 64u}) {
                S4DModelSpec spec;
                spec.dt_min = dt_min;
                spec.dt_max = std::max(0.1, dt_min * 2);
                spec.d_model = d_model;
                spec.d_state = d_state;
                spec.seed = static_cast<std::uint32_t>(d_model * 100 + d_state);
                auto m = make_s4d_model(spec);
                const auto in = random_signal(6000, 1, static_cast<std::uint32_t>(d_state));
                const auto ref = run_stream(m, in, 64);
                const std::string what = "dt_min " + std::to_string(dt_min) + " H " + std::to_string(d_model) + " N " +
                                         std::to_string(d_state);
                for (std::size_t threads : {1u, 3u}) {
                    for (std::size_t chunk : {std::size_t{1} << 15, std::size_t{97}}) {
                        BatchOptions o;
                        o.backend = Backend::fft;
                        o.threads = threads;
                        o.chunk_frames = chunk;
                        Batch b(m, o);
                        std::vector<float> out(in.size());
                        for (std::size_t t = 0; t < in.size(); t += 1000) {
                            const std::size_t n = std::min<std::size_t>(1000, in.size() - t);
                            b.process(in.data() + t, out.data() + t, n);
                        }
                        expect_close(ref, out, what + " threads " + std::to_string(threads) + " chunk " + std::to_string(chunk));
                    }
                }
            }
        }
    }
}

// The FFT view keeps its channel-major outputs in the output projection's scratch when that is wide enough: every
// output kind (GLU 2H, linear H, none) must give the streaming result, with chunks shorter and longer than a hop.
TEST(StreamVsBatch, FftEveryOutputKind) {
    for (const char* output : {"glu", "linear", "none"}) {
        S4DModelSpec spec;
        spec.dt_min = 0.05;
        spec.output = output;
        spec.d_model = 24;
        auto m = make_s4d_model(spec);
        const auto in = random_signal(20000, 1, 3);
        const auto ref = run_stream(m, in, 64);
        for (std::size_t chunk : {std::size_t{16}, std::size_t{5000}, std::size_t{1} << 15})
            expect_close(ref, run_batch(m, in, Backend::fft, chunk), std::string(output) + " chunk " + std::to_string(chunk));
    }
}

TEST(StreamVsBatch, FftUsedWhenForcedAndPlanSaysWhy) {
    S4DModelSpec spec;
    spec.dt_min = 0.01;
    auto m = make_s4d_model(spec);
    BatchOptions o;
    o.backend = Backend::fft;
    Batch b(m, o);
    int fft = 0;
    for (const auto& p : b.plan()) {
        EXPECT_FALSE(p.reason.empty());
        if (p.backend == "fft") {
            ++fft;
            EXPECT_GT(p.kernel_length, 0u);
            EXPECT_GT(p.fft_size, p.kernel_length);  // overlap-save needs room for at least one output
        }
    }
    EXPECT_EQ(fft, 2);
}

TEST(StreamVsBatch, MillionSamplesWithinTolerance) {
    S4DModelSpec spec;  // default dt range: slow modes, kernels of tens of thousands of taps
    spec.d_model = 8;
    spec.d_state = 16;
    auto m = make_s4d_model(spec);
    const std::size_t len = 1'000'000;
    auto in = random_signal(len, 1, 99);
    for (std::size_t i = 0; i < len; ++i) in[i] += 0.5f * std::sin(0.001f * static_cast<float>(i));  // a slow component
    const auto ref = run_stream(m, in, 256);
    {
        BatchOptions o;
        o.backend = Backend::fft;
        Batch b(m, o);
        for (const auto& p : b.plan())
            if (p.layer.rfind("s4d", 0) == 0) {
                EXPECT_EQ(p.backend, "fft") << p.reason;
            }
    }
    expect_close(ref, run_batch(m, in, Backend::fft, 1 << 16), "fft 1e6");
    expect_close(ref, run_batch(m, in, Backend::recurrence, 1 << 16), "recurrence 1e6");
}

TEST(StreamState, SaveAndRestoreContinuesExactly) {
    auto m = make_s4d_model({});
    const auto in = random_signal(3000, 1, 3);
    const auto ref = run_stream(m, in, 100);
    Stream a(m);
    a.prepare({16000, 100, 0});
    std::vector<float> out(3000);
    a.process(in.data(), out.data(), 1234);
    std::vector<std::byte> snap(a.state_bytes());
    a.save_state(snap);
    Stream b(m);  // a different stream, as after failover
    b.prepare({16000, 512, 0});
    b.load_state(snap);
    for (std::size_t t = 1234; t < 3000; t += 500) b.process(in.data() + t, out.data() + t, std::min<std::size_t>(500, 3000 - t));
    EXPECT_EQ(max_abs_diff(ref, out), 0.0);
    EXPECT_EQ(b.frames_processed(), 3000u);
}

TEST(StreamState, HandOffBetweenStreamAndBatchBothWays) {
    S4DModelSpec spec;
    spec.dt_min = 0.01;
    auto m = make_s4d_model(spec);
    const std::size_t len = 20000;
    const auto in = random_signal(len, 1, 5);
    const auto ref = run_stream(m, in, 64);
    for (Backend be : {Backend::fft, Backend::recurrence}) {
        std::vector<float> out(len);
        Stream s(m);
        s.prepare({16000, 64, 0});
        s.process(in.data(), out.data(), 5000);  // live
        std::vector<std::byte> snap(s.state_bytes());
        s.save_state(snap);
        BatchOptions o;
        o.backend = be;
        o.chunk_frames = 4096;
        Batch b(m, o);
        b.load_state(snap);
        b.process(in.data() + 5000, out.data() + 5000, 10000);  // catch up offline
        b.save_state(snap);
        Stream s2(m);
        s2.prepare({16000, 64, 0});
        s2.load_state(snap);
        s2.process(in.data() + 15000, out.data() + 15000, len - 15000);  // live again
        expect_close(ref, out, be == Backend::fft ? "handoff fft" : "handoff recurrence");
    }
}

TEST(StreamState, RejectsForeignOrCorruptState) {
    auto m1 = make_s4d_model({});
    S4DModelSpec other;
    other.seed = 2;
    auto m2 = make_s4d_model(other);
    Stream a(m1), b(m2);
    a.prepare({16000, 64, 0});
    b.prepare({16000, 64, 0});
    std::vector<std::byte> snap(a.state_bytes());
    a.save_state(snap);
    EXPECT_THROW(b.load_state(snap), UsageError);
    EXPECT_THROW(a.load_state(std::span<const std::byte>(snap).first(10)), UsageError);
    std::vector<std::byte> small(3);
    EXPECT_THROW(a.save_state(small), UsageError);
    snap[0] = std::byte{0};
    EXPECT_THROW(a.load_state(snap), UsageError);
}

TEST(StreamInput, NonFiniteSamplesAreZeroedCountedAndDoNotPoison) {
    auto m = make_s4d_model({});
    auto in = random_signal(2000, 1, 11);
    auto clean = in;
    in[500] = NAN;
    in[501] = INFINITY;
    clean[500] = clean[501] = 0.0f;
    for (auto policy : {NonFinitePolicy::zero_sample, NonFinitePolicy::reset_state}) {
        Stream s(m, policy);
        s.prepare({16000, 128, 0});
        std::vector<float> out(2000);
        for (std::size_t t = 0; t < 2000; t += 128) s.process(in.data() + t, out.data() + t, std::min<std::size_t>(128, 2000 - t));
        EXPECT_EQ(s.nonfinite_count(), 2u);
        for (float v : out) ASSERT_TRUE(std::isfinite(v));
        if (policy == NonFinitePolicy::zero_sample) {
            EXPECT_EQ(max_abs_diff(out, run_stream(m, clean, 128)), 0.0);
        }
    }
    Batch b(m);
    const auto out = b.run(in);
    EXPECT_EQ(b.nonfinite_count(), 2u);
    expect_close(run_stream(m, clean, 64), out, "batch with NaN");
}

TEST(StreamPrepare, RejectsWrongRateAndChannels) {
    auto m = make_s4d_model({});
    Stream s(m);
    EXPECT_THROW(s.prepare({44100, 64, 0}), UsageError);
    EXPECT_THROW(s.prepare({16000, 64, 2}), UsageError);
    EXPECT_THROW(s.prepare({16000, 0, 0}), UsageError);
    EXPECT_NO_THROW(s.prepare({16000, 64, 1}));
    EXPECT_NO_THROW(s.prepare({0, 64, 1}));  // rate unknown to the caller: trusted
}

TEST(StreamProcess, BeforePrepareWritesSilence) {
    auto m = make_s4d_model({});
    Stream s(m);
    std::vector<float> in(10, 1.0f), out(10, 5.0f);
    s.process(in.data(), out.data(), 10);
    for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(ModelSharing, OneModelManyStreamsOnThreads) {
    auto m = make_s4d_model({});
    const auto in = random_signal(5000, 1, 8);
    const auto ref = run_stream(m, in, 64);
    std::vector<std::vector<float>> outs(4);
    std::vector<std::thread> th;
    for (int i = 0; i < 4; ++i) th.emplace_back([&, i] { outs[i] = run_stream(m, in, 32 + 16 * i); });
    for (auto& t : th) t.join();
    for (const auto& o : outs) EXPECT_EQ(max_abs_diff(ref, o), 0.0);
}
