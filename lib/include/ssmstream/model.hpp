#pragma once
/** @file ssm::Model — a trained SSM's weights and layer graph, immutable and shared.
 *
 * One Model serves any number of `ssm::Stream`s and `ssm::Batch`es on any threads at once: nothing in it changes
 * after `load`. Discretisation of time-invariant layers happens once here.
 */
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/tensor_file.hpp"

namespace ssm {

namespace detail {
class Layer;
}

/** What `ssm info` prints: a model's identity and costs. */
struct ModelInfo {
    std::string name;
    std::string description;
    double sample_rate = 0;          ///< Hz; 0 = any rate
    std::size_t in_channels = 0;     ///< input width per frame
    std::size_t out_channels = 0;    ///< output width per frame
    std::size_t latency_samples = 0; ///< algorithmic latency the model declares (0 = causal, zero latency)
    std::size_t parameters = 0;      ///< trainable scalars
    std::size_t weight_bytes = 0;    ///< memory the weights occupy (float32, or BF16 where a checkpoint's matrices are BF16)
    std::size_t state_floats = 0;    ///< recurrent state per stream, in floats
    std::vector<std::string> layers; ///< one line per layer, outermost first
};

class Model {
public:
    /** Loads a native model file (safetensors + JSON config). Throws FormatError / ConfigError naming the fault. */
    static std::shared_ptr<const Model> load(const std::filesystem::path& path);
    /** Builds a model from an already validated tensor file (its metadata must hold the "ssmstream" config). */
    static std::shared_ptr<const Model> from_tensor_file(const TensorFile& file);

    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelInfo& info() const noexcept { return info_; }
    /** The JSON config as stored in the file. */
    const std::string& config_json() const noexcept { return config_json_; }
    /** A hash of config and weights; saved states carry it so a state is never loaded into another model. */
    std::uint64_t fingerprint() const noexcept { return fingerprint_; }

    /** The layer graph (library internals; stable only inside one build). */
    const std::vector<std::unique_ptr<detail::Layer>>& layers() const noexcept { return layers_; }
    /** Widest activation passed between top-level layers, in floats per frame (sizes the engines' buffers). */
    std::size_t max_width() const noexcept { return max_width_; }

private:
    Model();
    ModelInfo info_;
    std::string config_json_;
    std::uint64_t fingerprint_ = 0;
    std::vector<std::unique_ptr<detail::Layer>> layers_;
    std::size_t max_width_ = 0;
};

}  // namespace ssm
