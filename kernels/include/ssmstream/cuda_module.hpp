#pragma once
/** @file The CUDA backend as a module loaded at run time (dlopen), for programs that must not map the CUDA
 * libraries unless they use the GPU: cudart, cuFFT and cuBLAS add over 200 MB of resident memory to a process at
 * start-up, which a CPU run of `ssm` would pay for nothing. `ssm` loads `libssmstream_cuda_module.so` only when
 * `--backend cuda` is asked for, or when `auto` sees a long input and a GPU device node.
 *
 * The module is built by this project with the same compiler as its host program, so the interface is C++ (strings,
 * vectors, unique_ptr); `abi` guards against a module from another build. The module loads its own copy of the model
 * from the file, so no library object crosses the boundary.
 */
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/batch.hpp"

namespace ssm::cuda {

/** A GPU batch engine for one signal (see ssm::cuda::Batch). */
class ModuleEngine {
public:
    virtual ~ModuleEngine() = default;
    virtual void process(const float* in, float* out, std::size_t frames) = 0;
    virtual std::size_t chunk_frames() const noexcept = 0;
    virtual const std::vector<LayerPlan>& plan() const noexcept = 0;
};

struct ModuleApi {
    static constexpr int kAbi = 1;
    int abi = kAbi;
    int (*device_count)() noexcept = nullptr;
    std::string (*device_name)(int device) = nullptr;
    /** "" when the model file can run on the GPU backend, else why not. */
    std::string (*unsupported_reason)(const std::filesystem::path& model_file) = nullptr;
    /** Throws UsageError / Error as ssm::cuda::Batch does. */
    std::unique_ptr<ModuleEngine> (*create)(const std::filesystem::path& model_file) = nullptr;
};

}  // namespace ssm::cuda

/** The module's one exported symbol. */
extern "C" const ssm::cuda::ModuleApi* ssm_cuda_module_api();
