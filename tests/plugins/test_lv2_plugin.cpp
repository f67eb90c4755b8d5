// The LV2 plugin in an in-process host (lv2_host.hpp): run() and work_response() never allocate (operator new and,
// outside ASan, malloc/calloc/realloc are counted in this binary, which exports them so that the dlopen'ed plugin's
// calls land here), the model swap crossfades, bypass ramps, latency is reported and matches the dry path, the
// state round-trips, and unusable models are refused with a message in the host's log.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>

#include "lv2_host.hpp"
#include "support.hpp"

#include "alloc_counter.hpp"  // this binary's one counting allocation hook

using namespace ssm;
using namespace ssm::test;

namespace {
constexpr const char* mono = "urn:ssmstream:lv2:mono";
constexpr const char* stereo = "urn:ssmstream:lv2:stereo";

std::string model_file(double rate, std::size_t channels = 1, std::uint32_t seed = 1) {
    S4DModelSpec spec;
    spec.sample_rate = rate;
    spec.d_input = spec.d_output = channels;
    spec.seed = seed;
    return write_temp_model(spec, "lv2_" + std::to_string(static_cast<long>(rate)) + "_" + std::to_string(channels) + "_" +
                                      std::to_string(seed) + ".safetensors")
        .string();
}

void fill_noise(Lv2Host& h, std::size_t frames, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 0.1f);
    for (auto& ch : h.in)
        for (std::size_t i = 0; i < frames; ++i) ch[i] = d(rng);
}

// Runs `total` frames of `signal` through the plugin in blocks of `block`, returns channel 0.
std::vector<float> render(Lv2Host& h, const std::vector<float>& signal, std::size_t block) {
    std::vector<float> out(signal.size());
    for (std::size_t t = 0; t < signal.size(); t += block) {
        const std::size_t n = std::min(block, signal.size() - t);
        for (auto& ch : h.in) std::copy_n(signal.data() + t, n, ch.data());
        h.run(static_cast<std::uint32_t>(n));
        std::copy_n(h.out[0].data(), n, out.data() + t);
    }
    return out;
}
}  // namespace

TEST(Lv2Plugin, CounterSeesThePluginsAllocations) {  // or the zeros below would prove nothing
    counting = true;
    allocations = 0;
    {
        Lv2Host h(SSM_LV2_SO, mono, 48000);
        ASSERT_TRUE(h.ok()) << h.error;
    }
    counting = false;
    EXPECT_GT(allocations.load(), 0);
    counting = true;
    allocations = 0;
    void* p = counts_malloc ? std::malloc(10) : nullptr;
    counting = false;
    std::free(p);
    EXPECT_EQ(allocations.load(), counts_malloc ? 1 : 0);
}

// The central promise: thousands of run() calls with every feature exercised — odd block sizes (1 to longer than
// the plugin's internal chunk), parameter ramps, bypass, model swaps with crossfades through the worker, and both
// the direct and the resampling paths — and not one allocation inside run() or work_response().
TEST(Lv2Plugin, RunNeverAllocates) {
    const std::string a = model_file(16000, 1, 1), b = model_file(16000, 1, 2), c2 = model_file(16000, 2, 3);
    struct Case {
        const char* uri;
        double rate;
        std::vector<std::string> models;
    };
    for (const Case& k : {Case{mono, 16000, {a, b}}, Case{mono, 48000, {a, b}}, Case{stereo, 44100, {a, c2}},
                          Case{stereo, 16000, {c2, a}}}) {
        SCOPED_TRACE(std::string(k.uri) + " at " + std::to_string(k.rate));
        Lv2Host h(SSM_LV2_SO, k.uri, k.rate);
        ASSERT_TRUE(h.ok()) << h.error;
        const std::uint32_t blocks[] = {1, 7, 64, 256, 300, 1024, 2, 4096, 33};
        long total = 0;
        std::size_t runs = 0;
        for (int round = 0; round < 6; ++round) {
            h.set_model(k.models[round % 2]);  // a swap every round, the first from passthrough
            for (int i = 0; i < 40; ++i, ++runs) {
                const std::uint32_t n = blocks[(i + round) % std::size(blocks)];
                fill_noise(h, n, static_cast<std::uint32_t>(runs));
                h.dry_wet = i % 10 < 5 ? 1.0f : 0.3f;
                h.gain_db = i % 7 == 0 ? -6.0f : 0.0f;
                h.enabled = i % 13 == 12 ? 0.0f : 1.0f;
                counting = true;
                allocations = 0;
                h.run(n);  // work_response() of the previous work, then run()
                counting = false;
                total += allocations.load();
                if (i == 0) EXPECT_GE(h.work(), 1u) << "the patch:Set scheduled a load";  // worker thread, not counted
                else h.work();  // retired engines are deleted here
            }
            EXPECT_EQ(h.status, 1.0f) << h.log;
        }
        EXPECT_EQ(total, 0) << "allocations inside run() over " << runs << " calls";
        EXPECT_NE(h.log.find("loaded model"), std::string::npos) << h.log;
    }
}

TEST(Lv2Plugin, AtTheModelsRateTheOutputIsTheStream) {
    const std::string path = model_file(16000);
    Lv2Host h(SSM_LV2_SO, mono, 16000);
    ASSERT_TRUE(h.ok()) << h.error;
    h.set_model(path);
    h.run(0);
    h.work();
    auto sig = random_signal(5000, 1, 9, 0.3f);
    const auto out = render(h, sig, 37);
    EXPECT_EQ(h.latency, 0.0f);
    EXPECT_EQ(h.notified_path(), "");  // only right after the swap
    const auto ref = run_stream(Model::load(path), sig, 64);
    EXPECT_LT(max_abs_diff(out, ref), 1e-5);
}

TEST(Lv2Plugin, ResamplingReportsTheLatencyOfItsDryPathAndWetPath) {
    const std::string path = model_file(16000);
    for (double rate : {48000.0, 44100.0, 8000.0}) {
        SCOPED_TRACE(rate);
        Lv2Host h(SSM_LV2_SO, mono, rate);
        ASSERT_TRUE(h.ok()) << h.error;
        h.load_model(path, 1);
        ASSERT_EQ(h.status, 1.0f) << h.log;
        const auto latency = static_cast<std::size_t>(h.latency);
        EXPECT_GT(latency, 0u);
        EXPECT_NE(h.log.find("resampled inside"), std::string::npos) << h.log;
        // Dry path: an impulse comes out exactly `latency` frames later.
        std::vector<float> sig(latency + 4000, 0.0f);
        sig[2000] = 1.0f;  // after the 20 ms dry/wet ramp
        h.dry_wet = 0.0f;
        auto out = render(h, sig, 64);
        const auto peak = static_cast<std::size_t>(std::max_element(out.begin(), out.end(), [](float x, float y) { return std::abs(x) < std::abs(y); }) - out.begin());
        EXPECT_EQ(peak, 2000 + latency);
        EXPECT_EQ(out[2000 + latency], 1.0f);
    }
}

TEST(Lv2Plugin, SwapCrossfadesWithoutAJump) {
    const std::string a = model_file(16000, 1, 1), b = model_file(16000, 1, 2);
    Lv2Host h(SSM_LV2_SO, mono, 16000);
    ASSERT_TRUE(h.ok()) << h.error;
    h.load_model(a);
    std::vector<float> sine(16000);
    for (std::size_t i = 0; i < sine.size(); ++i) sine[i] = 0.3f * std::sin(2 * 3.14159265f * 220 * static_cast<float>(i) / 16000);
    auto before = render(h, std::vector<float>(sine.begin(), sine.begin() + 4000), 64);
    h.set_model(b);
    h.run(0);
    h.work();
    auto during = render(h, std::vector<float>(sine.begin() + 4000, sine.end()), 64);
    EXPECT_EQ(h.log.find("error"), std::string::npos) << h.log;
    // Largest step between consecutive frames: during the 20 ms (320-frame) fade no larger than in steady state.
    auto max_step = [](const std::vector<float>& v, std::size_t from, std::size_t to) {
        float m = 0;
        for (std::size_t i = from + 1; i < to; ++i) m = std::max(m, std::abs(v[i] - v[i - 1]));
        return m;
    };
    const float steady = std::max(max_step(before, 2000, 4000), max_step(during, 2000, 12000));
    EXPECT_LE(max_step(during, 0, 400), steady * 1.2f);
    // After the fade the output is model b's alone: the tail equals a fresh b stream fed the same (after warm-up
    // the states differ only by what b saw before the swap, which it also saw here: b ran from the swap on).
    const auto ref = run_stream(Model::load(b), std::vector<float>(sine.begin() + 4000, sine.end()), 64);
    EXPECT_LT(max_abs_diff(std::vector<float>(during.begin() + 400, during.end()), std::vector<float>(ref.begin() + 400, ref.end())), 1e-5);
}

TEST(Lv2Plugin, BypassAndGainRamp) {
    Lv2Host h(SSM_LV2_SO, mono, 16000);
    ASSERT_TRUE(h.ok()) << h.error;
    h.load_model(model_file(16000));
    std::vector<float> dc(2000, 0.5f);
    render(h, dc, 64);
    h.enabled = 0.0f;
    auto out = render(h, dc, 64);
    // 20 ms at 16 kHz = 320 frames from the processed signal to the dry one, no step larger than the ramp allows.
    EXPECT_NEAR(out[400], 0.5f, 1e-6);
    for (std::size_t i = 1; i < 400; ++i) EXPECT_LT(std::abs(out[i] - out[i - 1]), 0.02f) << i;
    h.enabled = 1.0f;
    h.dry_wet = 0.0f;
    h.gain_db = -20.0f;
    out = render(h, dc, 64);
    EXPECT_NEAR(out[1000], 0.05f, 1e-6);  // dry at -20 dB
    EXPECT_GT(out[10], 0.05f);            // still ramping
}

TEST(Lv2Plugin, StateRoundTripsTheModelPath) {
    const std::string path = model_file(16000);
    State st;
    {
        Lv2Host h(SSM_LV2_SO, mono, 16000);
        ASSERT_TRUE(h.ok()) << h.error;
        h.load_model(path);
        st = h.save();
    }
    Lv2Host h(SSM_LV2_SO, mono, 16000);
    ASSERT_TRUE(h.ok()) << h.error;
    const auto key = h.urid("urn:ssmstream:lv2:model");
    ASSERT_EQ(st.count(key), 1u);
    EXPECT_EQ(st[key].first, h.urid(LV2_ATOM__Path));
    EXPECT_EQ(std::string(st[key].second.c_str()), path);
    EXPECT_EQ(h.restore(st), LV2_STATE_SUCCESS) << h.log;
    h.run(64);
    EXPECT_EQ(h.status, 1.0f);
    EXPECT_EQ(h.notified_path(), path);
    EXPECT_NE(h.log.find("restored model"), std::string::npos) << h.log;
}

TEST(Lv2Plugin, RefusesWhatItCannotRunWithAMessageInTheLog) {
    struct Case {
        std::string path;
        const char* uri;
        double rate;
        const char* says;
    };
    const std::string missing = (temp_dir() / "no-such-model.safetensors").string();
    for (const Case& k : {Case{model_file(16000, 2), mono, 16000, "takes 2 channels"},
                          Case{model_file(100), mono, 48000, "only up to 256x"},
                          Case{missing, stereo, 48000, "no-such-model.safetensors"}}) {
        SCOPED_TRACE(k.path);
        Lv2Host h(SSM_LV2_SO, k.uri, k.rate);
        ASSERT_TRUE(h.ok()) << h.error;
        h.load_model(model_file(16000));  // something running before
        h.load_model(k.path);
        EXPECT_EQ(h.status, 2.0f);
        EXPECT_NE(h.log.find(k.says), std::string::npos) << h.log;
        EXPECT_NE(h.log.find("previous one keeps running"), std::string::npos) << h.log;
    }
}

TEST(Lv2Plugin, WithoutWorkerTheModelComesFromTheEnvironment) {  // the lv2apply path
    const std::string path = model_file(16000);
    ::setenv("SSM_LV2_MODEL", path.c_str(), 1);
    Lv2Host h(SSM_LV2_SO, mono, 16000, /*with_worker=*/false);
    ::unsetenv("SSM_LV2_MODEL");
    ASSERT_TRUE(h.ok()) << h.error;
    h.run(16);
    EXPECT_EQ(h.status, 1.0f) << h.log;
    h.set_model(path);  // without a worker the plugin cannot load on the audio thread: it says so by status
    h.run(16);
    EXPECT_EQ(h.status, 2.0f);
}
