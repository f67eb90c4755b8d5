#pragma once
// The GPU backend for `ssm run`, loaded at run time (ssmstream/cuda_module.hpp): a CPU run never maps the CUDA
// libraries.
#include <string>

#include "ssmstream/cuda_module.hpp"

namespace ssm::cli {

/** True if the kernel exposes an NVIDIA device node (/dev/nvidia0, …): a cheap test made before loading CUDA. */
bool gpu_device_node_present();

/** The CUDA module, loaded on first call; nullptr with `why` set when this ssm was built without it or it cannot
 * be loaded (the dlerror text). `SSM_CUDA_MODULE` in the environment names another module file. */
const cuda::ModuleApi* gpu_module(std::string& why);

}  // namespace ssm::cli
