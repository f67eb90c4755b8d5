#pragma once
/** @file Loading reference checkpoints as their authors save them, without a conversion step.
 *
 * A checkpoint directory holds `config.json` and `model.safetensors` (or shards listed in
 * `model.safetensors.index.json`). Understood today:
 * - Hugging Face `transformers` saves of MambaForCausalLM / MambaModel (`model_type` "mamba"), Mamba2ForCausalLM /
 *   Mamba2Model ("mamba2") and FalconMambaForCausalLM / FalconMambaModel ("falcon_mamba");
 * - `mamba_ssm` MambaLMHeadModel saves (`d_model`, `n_layer`, `ssm_cfg`, …) whose `pytorch_model.bin` was saved as
 *   `model.safetensors` (same tensor names).
 * The directory becomes a native model (docs/model-format.md): an `embedding` layer (the frame's one channel is the
 * token id), residual blocks [norm, mixer], the final norm and the LM head, so its output per frame is the logits.
 * Every config field that changes the maths is honoured; an unknown field is an error, never ignored.
 */
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/model.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm {

/** A checkpoint turned into the native config and tensors (names unchanged, tied weights made explicit). */
struct ImportedCheckpoint {
    std::string config_json;          ///< the native "ssmstream" config
    std::vector<TensorData> tensors;  ///< in the checkpoint's dtypes
    std::string architecture;         ///< e.g. "MambaForCausalLM (transformers)"
};

/** True if `path` is a directory with a `config.json`. */
bool is_checkpoint_dir(const std::filesystem::path& path);

/** Reads and validates a checkpoint directory. Throws FormatError / ConfigError naming the file, field or tensor. */
ImportedCheckpoint import_checkpoint(const std::filesystem::path& dir);

/** The native file's bytes for an imported checkpoint (what `ssm convert DIR OUT` writes). */
std::vector<std::byte> encode_native(const ImportedCheckpoint& ckpt);

/** Loads a native model file, or a checkpoint directory (imported in memory). */
std::shared_ptr<const Model> load_model(const std::filesystem::path& path);

}  // namespace ssm
