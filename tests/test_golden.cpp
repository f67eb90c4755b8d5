// Parity with the authors' reference code: tests/golden/<case>.model.safetensors is a reference module's weights
// in the native format, <case>.io.safetensors its input and the output the reference computed (make_golden.py).
// Tolerance: max |ours − reference| ≤ 1e-4 × max(1, RMS(reference)), float32, for the streaming view (blocks of
// 1 and 64) and both batch backends.
#include <gtest/gtest.h>

#include <filesystem>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> golden_cases() {
    std::vector<fs::path> out;
    const fs::path dir = fs::path(SSM_SOURCE_DIR) / "tests" / "golden";
    if (!fs::exists(dir)) return out;
    for (const auto& e : fs::directory_iterator(dir)) {
        const auto name = e.path().filename().string();
        if (name.size() > 16 && name.ends_with(".io.safetensors")) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST(Golden, EveryCaseMatchesTheReference) {
    const auto cases = golden_cases();
    ASSERT_GE(cases.size(), 4u) << "golden files missing from tests/golden (run tests/golden/make_golden.py)";
    for (const auto& io_path : cases) {
        const std::string stem = io_path.filename().string().substr(0, io_path.filename().string().size() - std::string(".io.safetensors").size());
        SCOPED_TRACE(stem);
        const auto model = Model::load(io_path.parent_path() / (stem + ".model.safetensors"));
        const auto io = TensorFile::open(io_path);
        const auto* tin = io.find("input");
        const auto* tout = io.find("output");
        ASSERT_TRUE(tin && tout);
        ASSERT_EQ(tin->shape.size(), 2u);
        ASSERT_EQ(static_cast<std::size_t>(tin->shape[1]), model->info().in_channels);
        ASSERT_EQ(static_cast<std::size_t>(tout->shape[1]), model->info().out_channels);
        const auto in = TensorFile::to_float(*tin);
        const auto ref = TensorFile::to_float(*tout);
        const double tol = 1e-4 * std::max(1.0, rms(ref));
        for (std::size_t block : {1u, 64u}) {
            const auto out = run_stream(model, in, block);
            EXPECT_LE(max_abs_diff(ref, out), tol) << "stream block " << block;
        }
        for (Backend b : {Backend::recurrence, Backend::fft}) {
            BatchOptions o;
            o.backend = b;
            Batch batch(model, o);
            EXPECT_LE(max_abs_diff(ref, batch.run(in)), tol) << (b == Backend::fft ? "batch fft" : "batch recurrence");
        }
        if (const auto* t64 = io.find("output_f64")) {  // the reference in float64: our float32 error alone
            const auto ref64 = TensorFile::to_double(*t64);
            const auto out = run_stream(model, in, 64);
            double m = 0;
            for (std::size_t i = 0; i < out.size(); ++i) m = std::max(m, std::abs(out[i] - ref64[i]));
            EXPECT_LE(m, tol) << "vs float64 reference";
        }
    }
}
