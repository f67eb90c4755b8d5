// The `sos` layer in the engine: streaming in any block size equals batch over 10^6 samples, a saved state carries a
// stream across Stream/Batch, a designed filter chains with a trained model, and malformed sos layers are refused
// with a message naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
using nlohmann::json;

namespace {

std::vector<float> run_batch(const std::shared_ptr<const Model>& m, const std::vector<float>& in, std::size_t chunk,
                             std::size_t piece) {
    BatchOptions o;
    o.chunk_frames = chunk;
    return run_batch_with(m, in, o, piece);
}

/** A model file with one sos layer holding `values` ([rows, cols] as given), for the malformed cases. */
std::vector<std::byte> sos_file(std::vector<std::int64_t> shape, std::vector<double> values, json extra = json::object(),
                                DType dtype = DType::F64) {
    json layer = {{"type", "sos"}, {"name", "f"}, {"channels", 1}, {"sections", shape.empty() ? 1 : shape[0]}};
    for (auto it = extra.begin(); it != extra.end(); ++it) layer[it.key()] = it.value();
    const json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bad-sos"}, {"sample_rate", 250}, {"layers", {layer}}};
    return encode_safetensors({{"ssmstream", cfg.dump()}}, {{"f.sos", shape, values, dtype}});
}

std::string load_error(const std::vector<std::byte>& bytes) {
    try {
        Model::from_tensor_file(TensorFile::from_bytes(bytes, "bad.safetensors"));
    } catch (const Error& e) {
        return e.what();
    }
    return "(loaded)";
}

const FilterSpec kBandpass{.family = FilterFamily::elliptic, .type = FilterType::bandpass, .order = 8, .sample_rate = 250,
                           .low = 0.5, .high = 40, .ripple_db = 0.5, .attenuation_db = 60};

}  // namespace

TEST(SosStream, EveryBlockSizeIsBitIdenticalAndBatchAgreesOverAMillionSamples) {
    const auto m = design(kBandpass, 2);
    const std::size_t frames = 1000000;
    const auto in = random_signal(frames, 2, 11);
    const auto ref = run_stream(m, in, 1);
    const double tol = 1e-4 * rms(ref);
    for (std::size_t block : {7u, 333u, 4096u}) EXPECT_EQ(max_abs_diff(ref, run_stream(m, in, block)), 0.0) << "block " << block;
    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 1 << 15, frames)), tol) << "batch, one call";
    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 1000, 777)), tol) << "batch, chunk edges every 1000 and 777 frames";
    EXPECT_EQ(max_abs_diff(ref, run_batch(m, in, 1000, 777)), 0.0) << "the same recurrence: identical, in fact";
    // The two channels are filtered independently by the same cascade.
    std::vector<float> ch0(frames), ch0_out(frames);
    for (std::size_t t = 0; t < frames; ++t) ch0[t] = in[2 * t];
    ch0_out = run_stream(design(kBandpass, 1), ch0, 512);
    for (std::size_t t = 0; t < frames; t += 997) ASSERT_EQ(ch0_out[t], ref[2 * t]) << t;
}

TEST(SosStream, SavedStateContinuesMidStreamAcrossViews) {
    const auto m = design(kBandpass, 1);
    const auto in = random_signal(20000, 1, 3);
    const auto ref = run_stream(m, in, 64);
    Stream a(m);
    a.prepare({250, 128, 0});
    std::vector<float> out(in.size());
    for (std::size_t t = 0; t < 7777; t += 101) a.process(in.data() + t, out.data() + t, std::min<std::size_t>(101, 7777 - t));
    EXPECT_EQ(a.state_bytes(), sizeof(state_format::Header) + 8 * 2 * 3 * sizeof(float));
    std::vector<std::byte> snap(a.state_bytes());
    a.save_state(snap);
    // into a fresh Stream
    Stream b(m);
    b.prepare({250, 256, 0});
    b.load_state(snap);
    std::vector<float> out_b(in.size() - 7777);
    b.process(in.data() + 7777, out_b.data(), 200);
    for (std::size_t t = 200; t < out_b.size(); t += 256) b.process(in.data() + 7777 + t, out_b.data() + t, std::min<std::size_t>(256, out_b.size() - t));
    for (std::size_t t = 0; t < 7777; ++t) ASSERT_EQ(out[t], ref[t]) << t;
    for (std::size_t t = 0; t < out_b.size(); ++t) ASSERT_EQ(out_b[t], ref[7777 + t]) << "stream after load, frame " << 7777 + t;
    // into a Batch, and back
    Batch batch(m);
    batch.load_state(snap);
    std::vector<float> out_c(5000);
    batch.process(in.data() + 7777, out_c.data(), 5000);
    for (std::size_t t = 0; t < 5000; ++t) ASSERT_EQ(out_c[t], ref[7777 + t]) << "batch after load, frame " << 7777 + t;
    std::vector<std::byte> snap2(batch.state_bytes());
    batch.save_state(snap2);
    Stream d(m);
    d.prepare({250, 64, 0});
    d.load_state(snap2);
    std::vector<float> out_d(64);
    d.process(in.data() + 12777, out_d.data(), 64);
    for (std::size_t t = 0; t < 64; ++t) ASSERT_EQ(out_d[t], ref[12777 + t]);
    // reset really zeroes the float64 state: the same output as a fresh stream
    d.reset();
    d.process(in.data(), out_d.data(), 64);
    for (std::size_t t = 0; t < 64; ++t) ASSERT_EQ(out_d[t], ref[t]);
}

TEST(SosStream, NonFiniteInputDoesNotPoisonTheFilter) {
    const auto m = design(kBandpass, 1);
    auto in = random_signal(4000, 1, 9);
    in[1000] = NAN;
    in[2000] = INFINITY;
    for (auto policy : {NonFinitePolicy::zero_sample, NonFinitePolicy::reset_state}) {
        Stream s(m, policy);
        s.prepare({250, 100, 0});
        std::vector<float> out(in.size());
        for (std::size_t t = 0; t < in.size(); t += 100) s.process(in.data() + t, out.data() + t, 100);
        for (float v : out) ASSERT_TRUE(std::isfinite(v));
        EXPECT_EQ(s.nonfinite_count(), 2u);
    }
}

TEST(SosChain, NotchThenTrainedModelStreamsAsBatch) {
    const auto path = std::filesystem::path(SSM_SOURCE_DIR) / "models" / "ecg-denoiser" / "ecg-denoiser.safetensors";
    const auto file = TensorFile::open(path);
    const auto trained = Model::from_tensor_file(file);
    const FilterSpec notch{.family = FilterFamily::notch, .sample_rate = trained->info().sample_rate, .notch_hz = 60, .q = 30,
                           .harmonics = 2};
    for (auto where : {FilterPlacement::before, FilterPlacement::after}) {
        const auto bytes = chain_filter_bytes(notch, file, where);
        const auto m = Model::from_tensor_file(TensorFile::from_bytes(bytes, "chain"));
        ASSERT_EQ(m->layers().size(), trained->layers().size() + 1);
        EXPECT_EQ(m->info().parameters, trained->info().parameters + 12);
        EXPECT_FALSE(is_lti_filter(*m));
        const auto in = random_signal(12000, 1, 21, 0.5f);  // > 2 batch chunks; short enough for ASan
        const auto ref = run_stream(m, in, 1);
        EXPECT_EQ(max_abs_diff(ref, run_stream(m, in, 333)), 0.0);
        BatchOptions o;
        Batch b(m, o);
        EXPECT_LE(max_abs_diff(ref, b.run(in)), 1e-4 * std::max(rms(ref), 1e-3));
        // before: the filter's output is what the trained model sees
        if (where == FilterPlacement::before) {
            const auto filtered = run_stream(design(notch), in, 64);
            EXPECT_LE(max_abs_diff(ref, run_stream(trained, filtered, 64)), 1e-6 * std::max(rms(ref), 1e-3));
        }
    }
    const FilterSpec wrong_rate{.family = FilterFamily::notch, .sample_rate = 250, .notch_hz = 50, .q = 30};
    try {
        chain_filter_bytes(wrong_rate, file, FilterPlacement::before);
        ADD_FAILURE() << "a 250 Hz filter was chained with a 360 Hz model";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("Hz"), std::string::npos) << e.what();
    }
}

TEST(SosMalformed, RejectedWithTheTensorNamed) {
    const std::vector<double> ok{0.5, 0.0, -0.5, 1.0, -0.2, 0.3};
    EXPECT_EQ(load_error(sos_file({1, 6}, ok)), "(loaded)");
    struct Case {
        std::string what;
        std::vector<std::byte> bytes;
        std::vector<std::string> needles;
    };
    const std::vector<Case> cases = {
        {"wrong shape", sos_file({1, 5}, {1, 0, 0, 1, 0}), {"'f.sos'", "shape [1, 5], expected [1, 6]"}},
        {"3-D", sos_file({1, 6, 1}, ok), {"'f.sos'", "shape"}},
        {"sections disagree", sos_file({2, 6}, {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}, {{"sections", 1}}), {"'f.sos'", "expected [1, 6]"}},
        {"a0 = 0", sos_file({1, 6}, {1, 0, 0, 0, 0.5, 0}), {"'f.sos'", "section 0", "a0 = 0"}},
        {"NaN", sos_file({1, 6}, {1, NAN, 0, 1, 0, 0}), {"'f.sos'", "NaN or Inf"}},
        {"Inf", sos_file({1, 6}, {1, 0, 0, 1, INFINITY, 0}), {"'f.sos'", "NaN or Inf"}},
        {"unstable complex", sos_file({2, 6}, {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, -1.0, 1.2}), {"'f.sos'", "section 1", "unstable", "|z| = 1.09"}},
        {"pole on the circle", sos_file({1, 6}, {1, 0, 0, 1, -1, 0}), {"'f.sos'", "unstable", "|z| = 1"}},
        {"unstable real", sos_file({1, 6}, {1, 0, 0, 2, -4, 1}), {"'f.sos'", "unstable", "|z| = 1.7"}},
        {"missing channels", sos_file({1, 6}, ok, {{"channels", nullptr}}), {"channels"}},
        {"unknown field", sos_file({1, 6}, ok, {{"gain", 2}}), {"unknown field 'gain'"}},
        {"design not an object", sos_file({1, 6}, ok, {{"design", "butter"}}), {"'design'"}},
        {"too many sections", sos_file({300, 6}, std::vector<double>(1800, 0.0), {{"sections", 300}}), {"at most 256"}},
    };
    for (const auto& c : cases) {
        const auto msg = load_error(c.bytes);
        for (const auto& n : c.needles) EXPECT_NE(msg.find(n), std::string::npos) << c.what << ": " << msg;
    }
    // a0 ≠ 1 is normalised on load: [2, 0, 0, 2, -1, 0] filters as [1, 0, 0, 1, -0.5, 0]
    const auto m2 = Model::from_tensor_file(TensorFile::from_bytes(sos_file({1, 6}, {2, 0, 0, 2, -1, 0}), "a0"));
    const auto y = run_stream(m2, {1.0f, 0.0f, 0.0f}, 1);
    EXPECT_EQ(y, (std::vector<float>{1.0f, 0.5f, 0.25f}));
}
