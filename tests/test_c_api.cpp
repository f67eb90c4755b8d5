// The C API: status codes and ssm_last_error for bad paths, malformed and unsupported models and misuse; model
// queries; and ssm_stream_process giving exactly the C++ Stream's output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "ssmstream/c_api.h"
#include "support.hpp"

using namespace ssm;
using namespace ssm::test;

namespace {

struct ModelDeleter {
    void operator()(ssm_model* m) const { ssm_model_free(m); }
};
struct StreamDeleter {
    void operator()(ssm_stream* s) const { ssm_stream_free(s); }
};
using ModelPtr = std::unique_ptr<ssm_model, ModelDeleter>;
using StreamPtr = std::unique_ptr<ssm_stream, StreamDeleter>;

bool contains(const char* haystack, const std::string& needle) {
    return haystack != nullptr && std::string(haystack).find(needle) != std::string::npos;
}

S4DModelSpec spec_2in_3out() {
    S4DModelSpec s;
    s.d_input = 2;
    s.d_output = 3;
    s.d_model = 8;
    s.d_state = 8;
    s.n_layers = 2;
    s.sample_rate = 16000;
    s.seed = 11;
    return s;
}

}  // namespace

TEST(CApi, LoadOfAMissingPathFailsWithAMessageNamingIt) {
    const auto path = (temp_dir() / "no-such-model.safetensors").string();
    ssm_status st = SSM_OK;
    ModelPtr m(ssm_model_load(path.c_str(), &st));
    EXPECT_EQ(m, nullptr);
    EXPECT_EQ(st, SSM_ERR_FORMAT);
    EXPECT_NE(std::strlen(ssm_last_error()), 0u);
    EXPECT_TRUE(contains(ssm_last_error(), path)) << ssm_last_error();
    EXPECT_TRUE(contains(ssm_last_error(), "cannot open")) << ssm_last_error();
    // A NULL status pointer is allowed.
    EXPECT_EQ(ssm_model_load(path.c_str(), nullptr), nullptr);
    // A NULL path is a usage error, not a crash.
    EXPECT_EQ(ssm_model_load(nullptr, &st), nullptr);
    EXPECT_EQ(st, SSM_ERR_USAGE);
    EXPECT_TRUE(contains(ssm_last_error(), "NULL")) << ssm_last_error();
}

TEST(CApi, MalformedAndUnsupportedModelsGiveFormatAndConfigStatus) {
    const auto good = make_s4d_model_bytes(spec_2in_3out());
    const auto trunc = temp_dir() / "c-api-truncated.safetensors";
    write_file_atomically(trunc, std::span(good).first(good.size() - 3));
    ssm_status st = SSM_OK;
    EXPECT_EQ(ssm_model_load(trunc.c_str(), &st), nullptr);
    EXPECT_EQ(st, SSM_ERR_FORMAT);
    EXPECT_TRUE(contains(ssm_last_error(), trunc.string())) << ssm_last_error();
    EXPECT_TRUE(contains(ssm_last_error(), "past the data section")) << ssm_last_error();

    // d_state odd: a well-formed file asking for something unsupported.
    auto spec = spec_2in_3out();
    spec.d_state = 7;
    const auto odd = write_temp_model(spec, "c-api-odd-state.safetensors");
    EXPECT_EQ(ssm_model_load(odd.c_str(), &st), nullptr);
    EXPECT_EQ(st, SSM_ERR_CONFIG);
    EXPECT_TRUE(contains(ssm_last_error(), odd.string())) << ssm_last_error();
    EXPECT_TRUE(contains(ssm_last_error(), "d_state must be even")) << ssm_last_error();
}

TEST(CApi, ModelQueries) {
    const auto path = write_temp_model(spec_2in_3out(), "c-api-model.safetensors");
    ssm_status st = SSM_ERR_OTHER;
    ModelPtr m(ssm_model_load(path.c_str(), &st));
    ASSERT_NE(m, nullptr) << ssm_last_error();
    EXPECT_EQ(st, SSM_OK);
    EXPECT_STREQ(ssm_last_error(), "") << "a success clears the last error";
    EXPECT_EQ(ssm_model_in_channels(m.get()), 2u);
    EXPECT_EQ(ssm_model_out_channels(m.get()), 3u);
    EXPECT_EQ(ssm_model_sample_rate(m.get()), 16000.0);
    EXPECT_EQ(ssm_model_latency(m.get()), 0u);
    // NULL handles answer 0 instead of crashing.
    EXPECT_EQ(ssm_model_in_channels(nullptr), 0u);
    EXPECT_EQ(ssm_model_out_channels(nullptr), 0u);
    EXPECT_EQ(ssm_model_sample_rate(nullptr), 0.0);
    EXPECT_EQ(ssm_model_latency(nullptr), 0u);
    ssm_model_free(nullptr);
    ssm_stream_free(nullptr);
    ssm_stream_reset(nullptr);
}

TEST(CApi, StreamNewChecksTheSampleRate) {
    const auto path = write_temp_model(spec_2in_3out(), "c-api-rate.safetensors");
    ModelPtr m(ssm_model_load(path.c_str(), nullptr));
    ASSERT_NE(m, nullptr) << ssm_last_error();

    auto p = ssm_stream_default_params();
    EXPECT_EQ(p.sample_rate, 0.0);
    EXPECT_GT(p.max_block, 0u);
    EXPECT_EQ(p.reset_on_nonfinite, 0);

    p.sample_rate = 44100;
    ssm_status st = SSM_OK;
    StreamPtr s(ssm_stream_new(m.get(), p, &st));
    EXPECT_EQ(s, nullptr);
    EXPECT_EQ(st, SSM_ERR_USAGE);
    EXPECT_TRUE(contains(ssm_last_error(), "44100")) << ssm_last_error();
    EXPECT_TRUE(contains(ssm_last_error(), "16000")) << ssm_last_error();

    EXPECT_EQ(ssm_stream_new(nullptr, ssm_stream_default_params(), &st), nullptr);
    EXPECT_EQ(st, SSM_ERR_USAGE);

    p.sample_rate = 16000;  // the model's rate, and 0 ("trust the model"), are accepted
    StreamPtr s1(ssm_stream_new(m.get(), p, &st));
    EXPECT_NE(s1, nullptr) << ssm_last_error();
    EXPECT_EQ(st, SSM_OK);
    StreamPtr s2(ssm_stream_new(m.get(), ssm_stream_default_params(), &st));
    EXPECT_NE(s2, nullptr) << ssm_last_error();
}

TEST(CApi, ProcessEqualsTheCppStream) {
    const auto spec = spec_2in_3out();
    const auto path = write_temp_model(spec, "c-api-process.safetensors");
    ModelPtr m(ssm_model_load(path.c_str(), nullptr));
    ASSERT_NE(m, nullptr) << ssm_last_error();
    const auto cpp_model = Model::load(path);

    const std::size_t frames = 1000, block = 64, cin = 2, cout = 3;
    const auto in = random_signal(frames, cin, 5);
    const auto expected = run_stream(cpp_model, in, block);

    auto p = ssm_stream_default_params();
    p.sample_rate = spec.sample_rate;
    p.max_block = block;
    ssm_status st = SSM_OK;
    StreamPtr s(ssm_stream_new(m.get(), p, &st));
    ASSERT_NE(s, nullptr) << ssm_last_error();
    // The stream keeps its model alive: free the model handle first.
    m.reset();

    auto run = [&] {
        std::vector<float> out(frames * cout, -1.0f);
        for (std::size_t t = 0; t < frames; t += block) {
            const std::size_t n = std::min(block, frames - t);
            EXPECT_EQ(ssm_stream_process(s.get(), in.data() + t * cin, out.data() + t * cout, n), SSM_OK);
        }
        return out;
    };
    const auto got = run();
    EXPECT_EQ(got, expected) << "C API output differs from ssm::Stream (max diff " << max_abs_diff(got, expected) << ")";
    EXPECT_GT(rms(got), 0.0);

    // reset gives a fresh stream: the same output again.
    ssm_stream_reset(s.get());
    EXPECT_EQ(run(), expected);

    // Misuse is reported by status only (process may run on an audio thread: no message is built).
    std::vector<float> buf(2 * block * cout);
    EXPECT_EQ(ssm_stream_process(s.get(), in.data(), buf.data(), block + 1), SSM_ERR_USAGE);
    EXPECT_EQ(ssm_stream_process(nullptr, in.data(), buf.data(), 1), SSM_ERR_USAGE);
    EXPECT_EQ(ssm_stream_process(s.get(), nullptr, buf.data(), 1), SSM_ERR_USAGE);
    EXPECT_EQ(ssm_stream_process(s.get(), in.data(), nullptr, 1), SSM_ERR_USAGE);
    EXPECT_EQ(ssm_stream_process(s.get(), nullptr, nullptr, 0), SSM_OK);
}

TEST(CApi, NonFiniteInputPolicy) {
    const auto spec = spec_2in_3out();
    const auto path = write_temp_model(spec, "c-api-nonfinite.safetensors");
    const auto cpp_model = Model::load(path);
    ModelPtr m(ssm_model_load(path.c_str(), nullptr));
    ASSERT_NE(m, nullptr);
    auto in = random_signal(200, 2, 8);
    in[2 * 50] = std::numeric_limits<float>::quiet_NaN();
    in[2 * 120 + 1] = std::numeric_limits<float>::infinity();
    for (int reset : {0, 1}) {
        auto p = ssm_stream_default_params();
        p.max_block = 200;
        p.reset_on_nonfinite = reset;
        StreamPtr s(ssm_stream_new(m.get(), p, nullptr));
        ASSERT_NE(s, nullptr);
        std::vector<float> out(200 * 3);
        ASSERT_EQ(ssm_stream_process(s.get(), in.data(), out.data(), 200), SSM_OK);
        for (float v : out) ASSERT_TRUE(std::isfinite(v));
        Stream ref(cpp_model, reset ? NonFinitePolicy::reset_state : NonFinitePolicy::zero_sample);
        ref.prepare({0, 200, 0});
        std::vector<float> want(200 * 3);
        ref.process(in.data(), want.data(), 200);
        EXPECT_EQ(out, want) << "reset_on_nonfinite=" << reset;
    }
}

TEST(CApi, LastErrorIsPerThread) {
    ssm_status st = SSM_OK;
    EXPECT_EQ(ssm_model_load("/nonexistent/model.safetensors", &st), nullptr);
    ASSERT_NE(std::strlen(ssm_last_error()), 0u);
    std::string other = "unset";
    std::thread([&] { other = ssm_last_error(); }).join();
    EXPECT_EQ(other, "");
    EXPECT_TRUE(contains(ssm_last_error(), "/nonexistent/model.safetensors"));
}
