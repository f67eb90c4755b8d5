// The shipped speech denoiser (models/speech-denoiser): it loads, streaming equals batch, and the C++
// engine reproduces the PyTorch model's output on the bundled example.
#include <gtest/gtest.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include "support.hpp"

using namespace ssm;
using namespace ssm::test;

namespace {

const std::filesystem::path kDir = std::filesystem::path(SSM_SOURCE_DIR) / "models" / "speech-denoiser";

std::vector<char> read_bytes(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + p.string());
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Minimal RIFF/WAVE reader for the bundled 16-bit mono PCM example.
std::vector<float> read_pcm16_wav(const std::filesystem::path& p) {
    const auto b = read_bytes(p);
    if (b.size() < 12 || std::memcmp(b.data(), "RIFF", 4) != 0 || std::memcmp(b.data() + 8, "WAVE", 4) != 0)
        throw std::runtime_error(p.string() + ": not a WAVE file");
    std::size_t pos = 12;
    std::uint16_t fmt = 0, channels = 0, bits = 0;
    while (pos + 8 <= b.size()) {
        std::uint32_t len = 0;
        std::memcpy(&len, b.data() + pos + 4, 4);
        if (std::memcmp(b.data() + pos, "fmt ", 4) == 0) {
            std::memcpy(&fmt, b.data() + pos + 8, 2);
            std::memcpy(&channels, b.data() + pos + 10, 2);
            std::memcpy(&bits, b.data() + pos + 22, 2);
        } else if (std::memcmp(b.data() + pos, "data", 4) == 0) {
            if (fmt != 1 || channels != 1 || bits != 16) throw std::runtime_error(p.string() + ": not 16-bit mono PCM");
            std::vector<float> out(std::min<std::size_t>(len, b.size() - pos - 8) / 2);
            for (std::size_t i = 0; i < out.size(); ++i) {
                std::int16_t v = 0;
                std::memcpy(&v, b.data() + pos + 8 + 2 * i, 2);
                out[i] = static_cast<float>(v) / 32768.0f;
            }
            return out;
        }
        pos += 8 + len + (len & 1);
    }
    throw std::runtime_error(p.string() + ": no data chunk");
}

std::shared_ptr<const Model> load_model() {
    return Model::from_tensor_file(TensorFile::open(kDir / "speech-denoiser.safetensors"));
}

}  // namespace

TEST(SpeechDenoiser, LoadsWithItsDeclaredShape) {
    const auto m = load_model();
    EXPECT_EQ(m->info().sample_rate, 16000.0);
    EXPECT_EQ(m->info().latency_samples, 0u);
    EXPECT_GT(m->info().parameters, 60000u);
}

TEST(SpeechDenoiser, StreamingEqualsBatch) {
    const auto m = load_model();
    const auto in = random_signal(20000, 1, 7, 0.1f);  // > 1 batch chunk, short enough for ASan
    const auto ref = run_stream(m, in, 1);
    EXPECT_LE(max_abs_diff(ref, run_stream(m, in, 160)), 1e-4 * rms(ref));
    BatchOptions o;
    Batch b(m, o);
    EXPECT_LE(max_abs_diff(ref, b.run(in)), 1e-4 * rms(ref));
}

TEST(SpeechDenoiser, MatchesPyTorchOnTheExample) {
    const auto m = load_model();
    const auto in = read_pcm16_wav(kDir / "example_noisy.wav");
    const auto gold_bytes = read_bytes(kDir / "example_pytorch.f32");
    std::vector<float> gold(gold_bytes.size() / 4);
    std::memcpy(gold.data(), gold_bytes.data(), gold.size() * 4);
    ASSERT_EQ(gold.size(), in.size());
    const auto out = run_stream(m, in, 256);
    // PyTorch runs the S4D layers as float32 FFT convolutions, the engine as float32 recurrences:
    // measured 7.0e-4 x RMS when the golden file was made; the tolerance is 2e-3 x RMS.
    EXPECT_LE(max_abs_diff(out, gold), 2e-3 * rms(gold));
    // and the model does change its input (it is not the identity)
    EXPECT_GT(max_abs_diff(out, in), 1e-3);
}
