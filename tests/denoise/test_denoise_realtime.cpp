// ssm-denoise's real-time path without a device: the PortAudio callback (callback.cpp) and the engine it runs
// (engine.cpp), driven directly. The callback path must allocate nothing (counting allocator) at the model's rate,
// with real-time resampling, playing a file, recording, and toggling bypass; its output must be the model's
// output; bypass must be the dry input at the same latency; a model too slow for the device must be suspended
// (dry signal through) and retried; bad set-ups must be refused with a clear message.
#include "alloc_counter.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "callback.hpp"
#include "engine.hpp"
#include "ssmstream/error.hpp"
#include "support.hpp"

using namespace ssm::denoise;
using ssm::test::S4DModelSpec;

namespace {

std::shared_ptr<const ssm::Model> model_at(double rate, std::size_t d_model = 16, std::size_t layers = 2) {
    S4DModelSpec s;
    s.sample_rate = rate;
    s.d_model = d_model;
    s.n_layers = layers;
    s.d_state = 32;
    return ssm::test::make_s4d_model(s);
}

struct Case {
    double device_rate;
    bool file;
};

}  // namespace

TEST(DenoiseRealtime, CallbackPathAllocatesNothing) {
    const auto model = model_at(16000);
    for (const Case c : {Case{16000, false}, Case{48000, false}, Case{44100, false}, Case{16000, true}, Case{48000, true}}) {
        SCOPED_TRACE("device " + std::to_string(c.device_rate) + (c.file ? " file" : " mic"));
        EngineConfig cfg;
        cfg.device_rate = c.device_rate;
        cfg.block = 64;
        cfg.record_frames = 1 << 16;
        Engine engine(model, cfg);
        SpscRing file_ring(1 << 16);
        std::atomic<bool> eof{false};
        CallbackContext ctx(engine, c.file ? 0 : 2, 2, c.file ? &file_ring : nullptr, c.file ? &eof : nullptr);
        const auto noise = ssm::test::random_signal(64 * 2, 1, 7, 0.3f);
        std::vector<float> in(64 * 2), out(64 * 2), drain(1 << 16);
        for (std::size_t i = 0; i < 64; ++i) in[2 * i] = in[2 * i + 1] = noise[i];
        PaStreamCallbackTimeInfo ti{0.010, 0.012, 0.014};  // ADC, now, DAC
        counting = true;
        for (int b = 0; b < 3000; ++b) {
            if (c.file) file_ring.push(noise.data(), 64);
            if (b % 100 == 0) engine.set_bypass(!engine.bypass());
            if (b == 2000) eof.store(true);  // the file's end: the callback plays its tail as silence
            denoise_callback(c.file ? nullptr : in.data(), out.data(), 64, &ti, b == 5 ? paOutputUnderflow : 0, &ctx);
            if (b % 500 == 0) {  // what the recorder thread does, here between callbacks
                engine.record_in()->pop(drain.data(), drain.size());
                engine.record_out()->pop(drain.data(), drain.size());
            }
        }
        counting = false;
        EXPECT_EQ(allocations.load(), 0) << "the callback path allocated";
        allocations = 0;
        EXPECT_EQ(ctx.callbacks.load(), 3000u);
        EXPECT_EQ(ctx.xruns.load(), 1u);  // the one flagged block
        EXPECT_EQ(engine.fifo_underruns(), 0u) << "the resampling FIFO ran short";
        EXPECT_EQ(engine.frames(), 3000u * 64);
        EXPECT_NEAR(ctx.device_latency.load(), 0.004, 1e-12);
        if (c.file) {
            EXPECT_EQ(ctx.file_underruns.load(), 0u);  // the ring was refilled every block: nothing ran out
        }
        EXPECT_EQ(engine.resampling(), c.device_rate != 16000);
        EXPECT_GT(engine.take_peak_in(), 0.0f);
    }
    if (!counts_malloc) std::printf("note: ASan owns malloc here; operator new is still counted\n");
}

TEST(DenoiseRealtime, OutputIsTheModelsAndBypassIsTheDrySignal) {
    const auto model = model_at(16000);
    EngineConfig cfg;
    cfg.device_rate = 16000;
    cfg.block = 64;
    Engine engine(model, cfg);
    EXPECT_EQ(engine.latency(), 0u);
    const auto x = ssm::test::random_signal(64 * 50, 1, 3, 0.5f);
    const auto want = ssm::test::run_stream(model, x, 64);
    std::vector<float> y(x.size());
    for (std::size_t b = 0; b < x.size(); b += 64) engine.process(x.data() + b, y.data() + b, 64);
    EXPECT_LE(ssm::test::max_abs_diff(y, want), 0.0) << "the engine's output is not the model's";
    engine.set_bypass(true);
    for (std::size_t b = 0; b < x.size(); b += 64) engine.process(x.data() + b, y.data() + b, 64);
    EXPECT_EQ(y, x) << "bypass is not the dry input";
}

TEST(DenoiseRealtime, ResamplingBypassKeepsTheReportedLatency) {
    const auto model = model_at(16000);
    EngineConfig cfg;
    cfg.device_rate = 48000;
    cfg.block = 64;
    Engine engine(model, cfg);
    ASSERT_TRUE(engine.resampling());
    const std::size_t lat = engine.resampler_latency();
    EXPECT_GT(lat, 0u);
    EXPECT_LT(lat, 48000u / 100);  // libsamplerate's fastest sinc both ways: well under 10 ms
    std::printf("48 kHz device, 16 kHz model, block 64: the resamplers add %zu frames (%.2f ms)\n", lat, lat / 48.0);
    engine.set_bypass(true);
    const auto x = ssm::test::random_signal(64 * 40, 1, 5, 0.5f);
    std::vector<float> y(x.size());
    for (std::size_t b = 0; b < x.size(); b += 64) engine.process(x.data() + b, y.data() + b, 64);
    for (std::size_t i = lat; i < x.size(); ++i) ASSERT_EQ(y[i], x[i - lat]) << i;
}

TEST(DenoiseRealtime, ASlowModelIsSuspendedAndRetriedNeverBlocking) {
    const auto model = model_at(16000, 64, 4);
    EngineConfig cfg;
    cfg.device_rate = 16000;
    cfg.block = 64;
    cfg.overload_load = 1e-6;  // any model is "too slow" for this budget
    cfg.overload_blocks = 4;
    cfg.retry_seconds = 0.04;  // 640 frames = 10 blocks
    Engine engine(model, cfg);
    const auto x = ssm::test::random_signal(64, 1, 9, 0.5f);
    std::vector<float> y(64);
    for (int b = 0; b < 4; ++b) engine.process(x.data(), y.data(), 64);
    EXPECT_TRUE(engine.suspended());
    EXPECT_EQ(engine.suspensions(), 1u);
    engine.process(x.data(), y.data(), 64);
    EXPECT_EQ(y, x) << "a suspended model passes the dry signal";
    int waited = 0;
    while (engine.suspended() && waited < 100) engine.process(x.data(), y.data(), 64), ++waited;
    EXPECT_EQ(waited, 10) << "retry_seconds = 10 blocks";
    for (int b = 0; b < 3; ++b) engine.process(x.data(), y.data(), 64);  // with the one that resumed, 4 overloads
    EXPECT_EQ(engine.suspensions(), 2u) << "the model was retried after retry_seconds and suspended again";
    EXPECT_GE(engine.overloaded_blocks(), 8u);
}

TEST(DenoiseRealtime, BadSetUpsAreRefusedClearly) {
    S4DModelSpec stereo;
    stereo.d_input = 2;
    stereo.d_output = 2;
    EngineConfig cfg;
    cfg.device_rate = 48000;
    try {
        Engine e(ssm::test::make_s4d_model(stereo), cfg);
        FAIL() << "a stereo model was accepted";
    } catch (const ssm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("mono"), std::string::npos) << e.what();
    }
    try {
        Engine e(model_at(100), cfg);  // 48 kHz <-> 100 Hz: beyond libsamplerate's ratio of 256
        FAIL() << "an impossible rate ratio was accepted";
    } catch (const ssm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("cannot resample"), std::string::npos) << e.what();
    }
}
