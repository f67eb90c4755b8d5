// The shipped biosignal models (models/ecg-denoiser, models/eeg-artifact): each loads with the declared rate and
// width and a declared look-ahead latency of at most 50 ms; streaming (blocks of 1, 37 and 360 frames) equals the batch run (both backends) within
// 1e-4 x RMS; the C++ output on the bundled example matches the PyTorch export (tests/golden/biomodels/,
// made by tests/golden/make_biomodels_golden.py in float64) within 1e-4 x RMS; and the model actually cleans its
// example: the output is closer to the bundled clean reference than the noisy input is, by a stated margin.
// Needs no ../shared/data (everything used is committed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

struct Shipped {
    const char* name;
    double rate;
    double min_gain_db;  // the example's SNR gain the model must reach (MODEL.md reports the measured value)
};

const Shipped kModels[] = {{"ecg-denoiser", 360.0, 4.0}, {"eeg-artifact", 125.0, 4.0}};

fs::path model_dir(const Shipped& s) { return fs::path(SSM_SOURCE_DIR) / "models" / s.name; }

std::vector<float> read_column_csv(const fs::path& p) {
    std::ifstream f(p);
    EXPECT_TRUE(f.good()) << p;
    std::string line;
    std::getline(f, line);  // header
    std::vector<float> v;
    while (std::getline(f, line)) {
        if (!line.empty()) v.push_back(std::stof(line));
    }
    return v;
}

// SNR of est against ref, where est[t] estimates ref[t - lag] (lag = the model's declared latency)
double snr_db(const std::vector<float>& ref, const std::vector<float>& est, std::size_t skip, std::size_t lag = 0) {
    double s = 0, e = 0;
    for (std::size_t i = skip; i < ref.size(); ++i) {
        s += double(ref[i - lag]) * ref[i - lag];
        const double d = double(est[i]) - ref[i - lag];
        e += d * d;
    }
    return 10.0 * std::log10(s / e);
}

std::vector<float> minus_median(std::vector<float> v) {
    auto t = v;
    std::nth_element(t.begin(), t.begin() + long(t.size() / 2), t.end());
    const float m = t[t.size() / 2];
    for (auto& x : v) x -= m;
    return v;
}

}  // namespace

class BioModel : public ::testing::TestWithParam<Shipped> {};

TEST_P(BioModel, LoadsWithDeclaredRateWidthAndLatencyUnder50ms) {
    const auto& s = GetParam();
    const auto m = Model::load(model_dir(s) / (std::string(s.name) + ".safetensors"));
    EXPECT_EQ(m->info().sample_rate, s.rate);
    EXPECT_EQ(m->info().in_channels, 1u);
    EXPECT_EQ(m->info().out_channels, 1u);
    EXPECT_LE(double(m->info().latency_samples), 0.050 * s.rate);
    EXPECT_GT(m->info().parameters, 1000u);
}

TEST_P(BioModel, StreamingEqualsBatchOnTheExample) {
    const auto& s = GetParam();
    const auto m = Model::load(model_dir(s) / (std::string(s.name) + ".safetensors"));
    const auto in = read_column_csv(model_dir(s) / "example_noisy.csv");
    ASSERT_GT(in.size(), 1000u);
    const auto ref = run_stream(m, in, 1);
    const double tol = 1e-4 * std::max(rms(ref), 1e-6);
    for (std::size_t block : {37u, 360u}) EXPECT_LE(max_abs_diff(ref, run_stream(m, in, block)), tol) << "block " << block;
    for (Backend b : {Backend::recurrence, Backend::fft}) {
        BatchOptions o;
        o.backend = b;
        o.chunk_frames = 1000;  // several chunk edges inside the example
        Batch batch(m, o);
        EXPECT_LE(max_abs_diff(ref, batch.run(in)), tol) << (b == Backend::fft ? "batch fft" : "batch recurrence");
    }
}

TEST_P(BioModel, MatchesThePyTorchExportOnTheStoredExample) {
    const auto& s = GetParam();
    const auto m = Model::load(model_dir(s) / (std::string(s.name) + ".safetensors"));
    const auto io = TensorFile::open(fs::path(SSM_SOURCE_DIR) / "tests" / "golden" / "biomodels" /
                                     (std::string(s.name) + ".io.safetensors"));
    const auto* tin = io.find("input");
    const auto* tout = io.find("output");
    ASSERT_TRUE(tin && tout);
    const auto in = TensorFile::to_float(*tin);
    const auto torch_out = TensorFile::to_float(*tout);
    ASSERT_EQ(in.size(), torch_out.size());
    // the golden's input is the bundled example
    const auto csv = read_column_csv(model_dir(s) / "example_noisy.csv");
    ASSERT_EQ(csv.size(), in.size());
    EXPECT_LE(max_abs_diff(csv, in), 1e-6 * std::max(rms(in), 1.0));
    const double tol = 1e-4 * rms(torch_out);
    EXPECT_LE(max_abs_diff(torch_out, run_stream(m, in, 64)), tol) << "stream";
    Batch batch(m);
    EXPECT_LE(max_abs_diff(torch_out, batch.run(in)), tol) << "batch (auto backend)";
}

TEST_P(BioModel, CleansItsExample) {
    const auto& s = GetParam();
    const auto m = Model::load(model_dir(s) / (std::string(s.name) + ".safetensors"));
    const auto noisy = read_column_csv(model_dir(s) / "example_noisy.csv");
    const auto clean = read_column_csv(model_dir(s) / "example_clean.csv");
    ASSERT_EQ(noisy.size(), clean.size());
    const auto out = run_stream(m, noisy, 64);
    const auto skip = static_cast<std::size_t>(2 * s.rate);  // zero initial state: 2 s settling
    const double in_snr = snr_db(clean, minus_median(noisy), skip);
    const double out_snr = snr_db(clean, out, skip, m->info().latency_samples);
    EXPECT_GE(out_snr - in_snr, s.min_gain_db) << "input " << in_snr << " dB, output " << out_snr << " dB";
}

INSTANTIATE_TEST_SUITE_P(Shipped, BioModel, ::testing::ValuesIn(kModels),
                         [](const ::testing::TestParamInfo<Shipped>& i) {
                             std::string n = i.param.name;
                             std::replace(n.begin(), n.end(), '-', '_');
                             return n;
                         });
