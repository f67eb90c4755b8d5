// libFuzzer target: bytes → TensorFile::from_bytes (every tensor converted) → Model::from_tensor_file.
// A clean ssm::Error is the expected answer to garbage; anything else — a crash, a sanitizer report, another
// exception, a broken invariant — is a finding. Build and run with tests/fuzz/run_fuzz.sh.
//
// With SSM_FUZZ_STREAM=1 in the environment, every model that loads also runs 8 frames through a Stream: that
// fuzzes the layers' maths with hostile (finite) weights, beyond the loader. See tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_model_file: invariant broken: %s\n", what);
    std::abort();
}

void check_tensors(const ssm::TensorFile& f) {
    for (const auto& t : f.tensors()) {
        if (t.bytes.size() != t.numel() * ssm::dtype_size(t.dtype)) finding("bytes != numel × dtype size");
        if (f.find(t.name) == nullptr) finding("find() misses a listed tensor");
        const auto v = ssm::TensorFile::to_float(t);  // reads every byte: ASan sees any out-of-bounds view
        if (v.size() != t.numel()) finding("to_float size");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const auto file = ssm::TensorFile::from_bytes(bytes, "fuzz");
        check_tensors(file);
        const auto model = ssm::Model::from_tensor_file(file);
        const auto& info = model->info();
        if (info.in_channels == 0 || info.out_channels == 0) finding("a model with a zero-width end");
        // Optionally, a loaded model must run: a few frames through a Stream (small models only, to keep runs fast).
        static const bool run_stream = [] {
            const char* e = std::getenv("SSM_FUZZ_STREAM");
            return e != nullptr && e[0] == '1';
        }();
        if (run_stream && info.in_channels * info.out_channels <= 4096 && info.parameters <= (1u << 16)) {
            ssm::Stream s(model);
            s.prepare({info.sample_rate, 8, 0});
            std::vector<float> in(8 * info.in_channels, 0.5f), out(8 * info.out_channels);
            s.process(in.data(), out.data(), 8);
        }
    } catch (const ssm::Error&) {
        // the expected outcome for malformed input
    }
    return 0;
}
