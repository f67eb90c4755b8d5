#include "gpu.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace ssm::cli {

bool gpu_device_node_present() {
    std::error_code ec;
    for (int i = 0; i < 16; ++i)
        if (std::filesystem::exists("/dev/nvidia" + std::to_string(i), ec)) return true;
    return false;
}

const cuda::ModuleApi* gpu_module(std::string& why) {
    static const cuda::ModuleApi* api = nullptr;
    static std::string error;
    static bool tried = false;
    if (!tried) {
        tried = true;
        std::vector<std::string> candidates;
        if (const char* env = std::getenv("SSM_CUDA_MODULE"); env && *env) candidates.emplace_back(env);
#ifdef SSM_CUDA_MODULE_BUILT
        candidates.emplace_back(SSM_CUDA_MODULE_BUILT);
#endif
#ifdef SSM_CUDA_MODULE_INSTALLED
        candidates.emplace_back(SSM_CUDA_MODULE_INSTALLED);
#endif
        if (candidates.empty()) error = "this ssm was built without CUDA (configure with nvcc on the PATH)";
        for (const auto& path : candidates) {
            std::error_code ec;
            if (!std::filesystem::exists(path, ec)) {
                if (error.empty()) error = "no CUDA module (" + path + " not found)";
                continue;
            }
            void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!lib) {
                const char* e = ::dlerror();
                error = e ? e : (path + ": cannot be loaded");
                continue;
            }
            using Entry = const cuda::ModuleApi* (*)();
            auto entry = reinterpret_cast<Entry>(::dlsym(lib, "ssm_cuda_module_api"));
            const cuda::ModuleApi* a = entry ? entry() : nullptr;
            if (!a || a->abi != cuda::ModuleApi::kAbi) {
                error = path + ": not an ssmstream CUDA module of this build";
                ::dlclose(lib);
                continue;
            }
            api = a;  // kept loaded for the life of the process
            break;
        }
    }
    if (!api) why = error;
    return api;
}

}  // namespace ssm::cli
