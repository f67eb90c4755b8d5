#pragma once
// The `sos` layer's sections, for the offline zero-phase path (filters/filter_model.cpp) that needs them whole.
#include <array>
#include <vector>

#include "layers/layer.hpp"

namespace ssm::detail {

/** The normalised sections (a0 = 1) of an `sos` layer, or nullptr when `layer` is another type. */
const std::vector<std::array<double, 6>>* sos_sections(const Layer& layer) noexcept;

}  // namespace ssm::detail
