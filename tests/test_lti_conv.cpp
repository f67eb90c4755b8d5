// The convolution view (FFT) of every time-invariant family that runs through LtiConv — S4, DSS, GSS, H3, MEGA's
// EMA, HiPPO — forced, against the reference's golden output, against streaming over 10⁶ samples, and with states
// handed between Stream and Batch in both directions (also before a loaded state has decayed out of the kernel).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <span>
#include <string>

#include "ssmstream/ssmstream.hpp"
#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(SSM_SOURCE_DIR) / "tests" / "golden";

// The release build runs the full lengths and every case; the sanitizer build (5-10x slower) a tenth of the lengths
// and, for the long tests, each family's main case.
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kScale = 10;
#else
constexpr std::size_t kScale = 1;
#endif

struct Case {
    const char* dir;
    const char* stem;
    bool long_run;  // the family's 10⁶-sample stream == batch case (the others run 10⁵)
};
const Case kCases[] = {
    {"s4", "s4_layer_default", true},       {"s4", "s4_layer_fout", false},         {"s4", "s4_layer_legt_rank2", false},
    {"s4", "s4_layer_nofinal", false},      {"lti_a", "dss_layer_exp", false},      {"lti_a", "dss_layer_softmax", false},
    {"lti_a", "dss_layer_softmax_maxlen", true}, {"lti_a", "dss_stack", false},     {"lti_a", "ema_layer", true},
    {"lti_a", "ema_stack", false},          {"lti_a", "ema_trunc", false},          {"h3", "h3_layer_default", true},
    {"h3", "h3_layer_zoh", false},          {"gss", "gss_layer_default", true},     {"gss", "gss_stack4", false},
    {"hippo", "hippo_legs", false},         {"hippo", "hippo_legt", true},          {"hippo", "hippo_lagt", false},
    {"hippo", "hippo_fout", false},
};

std::shared_ptr<const Model> load(const Case& c) { return Model::load(kGolden / c.dir / (std::string(c.stem) + ".model.safetensors")); }

BatchOptions fft_options(std::size_t threads = 2, std::size_t chunk = 1 << 15) {
    BatchOptions o;
    o.backend = Backend::fft;
    o.threads = threads;
    o.chunk_frames = chunk;
    return o;
}

}  // namespace

TEST(LtiConv, EveryFamilyPlansAnFftWhenAsked) {
    for (const auto& c : kCases) {
        SCOPED_TRACE(c.stem);
        Batch b(load(c), fft_options());
        std::size_t ffts = 0;
        for (const auto& p : b.plan()) {
            if (p.backend == "fft") {
                ++ffts;
                EXPECT_GT(p.kernel_length, 0u);
                EXPECT_GT(p.fft_size, p.kernel_length);
            } else if (p.backend == "recurrence") {
                // only a kernel too long to truncate may refuse (S4 FouT / LegT checkpoints: time constants ~10⁵)
                EXPECT_NE(p.reason.find("decays slower"), std::string::npos) << p.reason;
            }
        }
        std::printf("[plan] %-26s", c.stem);
        for (const auto& p : b.plan())
            if (p.backend != "pointwise") std::printf("  %s Lk=%zu M=%zu", p.backend.c_str(), p.kernel_length, p.fft_size);
        std::printf("\n");
        // each family's main case must run as FFT
        if (c.long_run) {
            EXPECT_GT(ffts, 0u) << "no layer of " << c.stem << " planned an FFT";
        }
    }
}

TEST(LtiConv, FftMatchesTheReferenceGolden) {
    for (const auto& c : kCases) {
        SCOPED_TRACE(c.stem);
        const auto io = TensorFile::open(kGolden / c.dir / (std::string(c.stem) + ".io.safetensors"));
        const auto in = TensorFile::to_float(*io.find("input"));
        const auto* r64 = io.find("output_f64");
        const auto ref = r64 ? TensorFile::to_double(*r64) : TensorFile::to_double(*io.find("output"));
        std::vector<float> rf(ref.begin(), ref.end());
        const double tol = 1e-4 * std::max(1.0, rms(rf));
        Batch b(load(c), fft_options());
        const auto out = b.run(in);
        ASSERT_EQ(out.size(), ref.size());
        const double err = max_abs_diff64(out, ref);
        std::printf("[fft-vs-reference] %-26s max|err| = %.2e (tol %.1e)\n", c.stem, err, tol);
        EXPECT_LE(err, tol);
    }
}

TEST(LtiConv, FftEqualsStreamingOverAMillionSamples) {
    for (const auto& c : kCases) {
        if (kScale > 1 && !c.long_run) continue;  // sanitizer build: each family's main case
        SCOPED_TRACE(c.stem);
        const auto model = load(c);
        const std::size_t samples = (c.long_run ? 1000000 : 100000) / kScale;
        const std::size_t ch = model->info().in_channels, frames = (samples + ch - 1) / ch;
        const auto in = random_signal(frames, ch, 21);
        const auto ref = run_stream(model, in, 256);
        const double tol = 1e-4 * std::max(rms(ref), 1e-3);
        const double e1 = max_abs_diff(ref, run_batch_with(model, in, fft_options(2)));
        // small chunks, pieces that straddle them: the history crosses chunk and call boundaries
        const double e2 = max_abs_diff(ref, run_batch_with(model, in, fft_options(3, 5000), 7777));
        std::printf("[fft-vs-stream] %-26s %zu frames x %zu ch: max|err|/rms = %.2e, chunk 5000: %.2e\n", c.stem, frames, ch,
                    e1 / std::max(rms(ref), 1e-3), e2 / std::max(rms(ref), 1e-3));
        EXPECT_LE(e1, tol);
        EXPECT_LE(e2, tol) << "chunk 5000, pieces 7777";
    }
}

TEST(LtiConv, StatesCrossBetweenStreamAndFftBatch) {
    for (const auto& c : kCases) {
        if (kScale > 1 && !c.long_run) continue;  // sanitizer build: each family's main case
        SCOPED_TRACE(c.stem);
        const auto model = load(c);
        const std::size_t ch = model->info().in_channels, oc = model->info().out_channels;
        const std::size_t a = 3000, b = 200, total = 9000;  // b: a load, then a save before the kernel has passed
        const auto in = random_signal(total, ch, 9);
        const auto ref = run_stream(model, in, 128);
        const double tol = 1e-4 * std::max(rms(ref), 1e-3);
        std::vector<float> out(total * oc);
        Stream s(model);
        s.prepare({0, 512, 0});
        s.process(in.data(), out.data(), a);
        std::vector<std::byte> snap(s.state_bytes());
        s.save_state(snap);
        Batch bt(model, fft_options());
        bt.load_state(snap);
        bt.process(in.data() + a * ch, out.data() + a * oc, b);
        bt.save_state(snap);  // a loaded state still decaying, plus b inputs
        Stream s2(model);
        s2.prepare({0, 512, 0});
        s2.load_state(snap);
        for (std::size_t t = a + b; t < total - a; t += 512) {
            const std::size_t n = std::min<std::size_t>(512, total - a - t);
            s2.process(in.data() + t * ch, out.data() + t * oc, n);
        }
        s2.save_state(snap);
        Batch bt2(model, fft_options());
        bt2.load_state(snap);
        bt2.process(in.data() + (total - a) * ch, out.data() + (total - a) * oc, a);
        EXPECT_LE(max_abs_diff(ref, out), tol) << "stream → fft batch → stream → fft batch";
        // a long run in batch, saved and resumed in a stream
        Batch bt3(model, fft_options());
        std::vector<float> out3(total * oc);
        bt3.process(in.data(), out3.data(), total - b);
        bt3.save_state(snap);
        Stream s3(model);
        s3.prepare({0, 512, 0});
        s3.load_state(snap);
        s3.process(in.data() + (total - b) * ch, out3.data() + (total - b) * oc, b);
        EXPECT_LE(max_abs_diff(ref, out3), tol) << "fft batch → stream";
        bt3.reset();
        const auto again = bt3.run(std::span<const float>(in.data(), a * ch));
        EXPECT_LE(max_abs_diff(std::vector<float>(ref.begin(), ref.begin() + static_cast<long>(a * oc)), again), tol) << "reset";
    }
}

TEST(LtiConv, RecurrenceForcedIsBitIdenticalToStreaming) {
    for (const auto& c : kCases) {
        if (kScale > 1 && !c.long_run) continue;  // sanitizer build: each family's main case
        SCOPED_TRACE(c.stem);
        const auto model = load(c);
        const std::size_t ch = model->info().in_channels;
        const auto in = random_signal(5000, ch, 4);
        BatchOptions o;
        o.backend = Backend::recurrence;
        o.threads = 1;
        EXPECT_EQ(max_abs_diff(run_stream(model, in, 256), run_batch_with(model, in, o)), 0.0);
    }
}
