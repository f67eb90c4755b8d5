// The CUDA backend behind ssmstream/cuda_module.hpp: what a program gets by dlopen-ing libssmstream_cuda_module.so.
#include "ssmstream/cuda.hpp"
#include "ssmstream/cuda_module.hpp"

namespace ssm::cuda {
namespace {

class Engine final : public ModuleEngine {
public:
    explicit Engine(const std::filesystem::path& file)
        : weights_(TensorFile::open(file)), batch_(Model::from_tensor_file(weights_), weights_) {}
    void process(const float* in, float* out, std::size_t frames) override { batch_.process(in, out, frames); }
    std::size_t chunk_frames() const noexcept override { return batch_.chunk_frames(); }
    const std::vector<LayerPlan>& plan() const noexcept override { return batch_.plan(); }

private:
    TensorFile weights_;
    Batch batch_;
};

const ModuleApi api = [] {
    ModuleApi a;
    a.device_count = &device_count;
    a.device_name = &device_name;
    a.unsupported_reason = [](const std::filesystem::path& file) { return cuda::unsupported_reason(TensorFile::open(file)); };
    a.create = [](const std::filesystem::path& file) -> std::unique_ptr<ModuleEngine> { return std::make_unique<Engine>(file); };
    return a;
}();

}  // namespace
}  // namespace ssm::cuda

extern "C" __attribute__((visibility("default"))) const ssm::cuda::ModuleApi* ssm_cuda_module_api() { return &ssm::cuda::api; }
