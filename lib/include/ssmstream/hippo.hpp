#pragma once
/** @file HiPPO operators: a signal's online polynomial (or Fourier) coefficients and their reconstruction.
 *
 * The HiPPO projection of Gu et al. (state-spaces/s4 `src/models/hippo/hippo.py`, `transition(measure, N)`) is an
 * LTI state-space system x' = A x + B u whose state x(t) holds the coefficients of the recent past of u in an
 * orthogonal basis, so that u(t − s) ≈ Σ_n x_n(t) φ_n(s). The measures (A, B exactly as that `transition`):
 *  - "legs": Legendre under the exponential measure e^{−s} (the S4 HiPPO-LegS matrix, used time-invariantly);
 *  - "legt": Legendre on a sliding window of length 2 (hippo.py halves A and B: "timescale correctness");
 *  - "lagt": Laguerre, measure e^{−s} (β = 1);
 *  - "fout": Fourier (cos/sin pairs) on a sliding window of length 2.
 * s and the window are in continuous time units; one sample is `dt` of them, so a LegT window spans 2/dt samples.
 * Discretised once (bilinear by default, as the reference `HiPPO` module via scipy `cont2discrete`).
 *
 * A model made here is an ordinary native model (one `hippo` layer: tensors `hippo.dA` [N, N] and `hippo.dB` [N],
 * the buffers the reference module saves), so it streams, batches and saves state like any other.
 */
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/model.hpp"

namespace ssm::hippo {

struct Spec {
    std::string measure = "legs";          ///< legs, legt, lagt or fout
    std::size_t order = 32;                ///< N, coefficients per channel (even for fout)
    double dt = 0.01;                      ///< continuous time per sample (> 0)
    std::string discretization = "bilinear";  ///< bilinear, zoh, forward (Euler) or backward
    std::size_t channels = 1;              ///< independent input channels; output is channels × N
    double sample_rate = 0;                ///< written into the model (0 = any rate)
};

/** A, B of hippo.py `transition(measure, N)`: A row-major N×N, B length N. Throws UsageError on a bad measure/N. */
void transition(const std::string& measure, std::size_t N, std::vector<double>& A, std::vector<double>& B);

/** Discretised (dA row-major N×N, dB length N), in double, as scipy.signal.cont2discrete does for `spec`. */
void discretize(const Spec& spec, std::vector<double>& dA, std::vector<double>& dB);

/** The bytes of a native model file holding one `hippo` layer for `spec` (validated by loading). */
std::vector<std::byte> model_bytes(const Spec& spec);
std::shared_ptr<const Model> make_model(const Spec& spec);

/** φ_n(s) for each s in `s` (continuous time into the past, ≥ 0): rows of N, so that u(t − s) ≈ Σ_n c_n(t) φ_n(s).
 * Zero outside the measure's window (legt, fout: s > 2). */
std::vector<double> basis(const std::string& measure, std::size_t N, const std::vector<double>& s);

/** The window length a reconstruction is meaningful over, in continuous time (legt, fout: 2; legs, lagt: the
 * measure's support is unbounded, its effective memory ~ a few units). */
double window(const std::string& measure);

}  // namespace ssm::hippo
