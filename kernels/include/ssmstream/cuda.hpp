#pragma once
/** @file CUDA backend entry points (target ssmstream::cuda, built only when nvcc is found). */
namespace ssm::cuda {
/** Number of usable CUDA devices; 0 when there is no GPU or no driver (never throws). */
int device_count() noexcept;
}  // namespace ssm::cuda
