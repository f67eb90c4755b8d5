#include <cuda_runtime.h>

#include "ssmstream/cuda.hpp"

namespace ssm::cuda {
int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}
}  // namespace ssm::cuda
