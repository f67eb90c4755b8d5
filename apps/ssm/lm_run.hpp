#pragma once
// `ssm run` for language models (a checkpoint directory, or a native file whose first layer is an embedding):
// integer token ids from a .npy in, float32 logits [T, vocab] out; and `ssm convert DIR OUT` for checkpoints.
#include <filesystem>
#include <string>

#include "ssmstream/ssmstream.hpp"

namespace ssm::app {

/** True if `p` is a .npy file of integers (a token-id file). */
bool is_token_npy(const std::filesystem::path& p);

struct TokenRunOptions {
    std::string backend = "auto";  // auto / recurrence: Batch; stream: Stream in blocks of `block`
    std::size_t block = 512;
    std::size_t threads = 0;
    bool json = false, quiet = false;
};

/** Runs `model` over the token ids in `in` (.npy, integer, shape (T,), (T, 1) or (1, T)) and writes the logits to
 * `out` (.npy float32 [T, out_channels]) atomically. Throws ssm::Error on a bad model, file or token id. */
int run_tokens(const std::shared_ptr<const Model>& model, const std::filesystem::path& model_path,
               const std::filesystem::path& in, const std::filesystem::path& out, const TokenRunOptions& o);

/** Imports a checkpoint directory and writes the native file (tensors as `dtype`: f32, f16, bf16, f64, or "keep"). */
std::string convert_checkpoint(const std::filesystem::path& dir, const std::filesystem::path& out, const std::string& dtype);

}  // namespace ssm::app
