#pragma once
// Host-side helpers of the CUDA backend: error checks that throw ssm::Error with CUDA's own text, and an owning
// device array. Shared by the .cu files and the host glue (compiled by the host compiler).
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "ssmstream/error.hpp"

namespace ssm::cuda::detail {

[[noreturn]] void throw_cuda(const char* what, int code, const char* text, const char* file, int line);

inline void check(cudaError_t e, const char* what, const char* file, int line) {
    if (e != cudaSuccess) throw_cuda(what, static_cast<int>(e), cudaGetErrorString(e), file, line);
}

#define SSM_CUDA_CHECK(expr) ::ssm::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
/** After a launch: a bad configuration shows up here, a fault in the kernel at the next synchronisation. */
#define SSM_CUDA_LAUNCHED(name) ::ssm::cuda::detail::check(cudaGetLastError(), name, __FILE__, __LINE__)

/** Blocks of `threads` for a grid-stride loop over n items: enough to fill the GPU, at most 65536 (the kernels stride
 * over the rest). */
inline unsigned grid_stride_blocks(std::size_t n, std::size_t threads = 256) {
    const std::size_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(b < 1 ? 1 : (b > 65536 ? 65536 : b));
}

/** An owning device array of `n` elements (uninitialised). */
template <class T>
class DeviceArray {
public:
    DeviceArray() = default;
    explicit DeviceArray(std::size_t n) : n_(n) {
        if (n > 0) SSM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)));
    }
    ~DeviceArray() {
        if (p_) cudaFree(p_);
    }
    DeviceArray(DeviceArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    T* get() const noexcept { return p_; }
    std::size_t size() const noexcept { return n_; }
    void zero() {
        if (n_) SSM_CUDA_CHECK(cudaMemset(p_, 0, n_ * sizeof(T)));
    }
    void upload(const T* src, std::size_t n) { SSM_CUDA_CHECK(cudaMemcpy(p_, src, n * sizeof(T), cudaMemcpyHostToDevice)); }

private:
    T* p_ = nullptr;
    std::size_t n_ = 0;
};

}  // namespace ssm::cuda::detail
