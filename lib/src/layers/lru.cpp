// LRU — the Linear Recurrent Unit of Orvieto et al. 2023 ("Resurrecting Recurrent Neural Networks for Long
// Sequences"), as its authors' JAX code and the minimal-LRU port (NicolasZucchet/minimal-LRU `lru/model.py`, class
// `LRU`) define it, inference only. Parameters under the layer's name, as the flax module names them:
//   λ = exp(−exp(nu_log) + i·exp(theta_log))            [N]
//   B = (B_re + i·B_im) · exp(gamma_log)[:, None]         [N, H]   (the γ normalisation)
//   C = C_re + i·C_im                                     [H, N]
//   x_t = λ ⊙ x_{t−1} + B u_t,    y_t = Re(C x_t) + D ⊙ u_t
// `activation: full_glu` adds minimal-LRU's SequenceLayer activation (gelu, out1·σ(out2), see SeqActivation); its
// norm and skip are native `residual`/`batchnorm`/`layernorm` layers (docs/families-a.md).
#include <cmath>

#include "layers/diag_mimo.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

class Lru final : public DiagMimoLayer {
public:
    std::size_t param_count() const noexcept override { return 3 * m.P + 4 * m.P * m.H + m.H + act.param_count(); }
    std::string describe() const override {
        return "lru '" + name + "' H=" + std::to_string(m.H) + " N=" + std::to_string(m.P) + " activation=" + act.kind_name;
    }
};

}  // namespace

std::unique_ptr<Layer> make_lru(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_hidden", "activation", "dense_prefix"});
    auto l = std::make_unique<Lru>();
    l->name = get_string(c, "name", "", true);
    const std::size_t Hs = get_size(c, "d_model", in_width, false), Ns = get_size(c, "d_hidden");
    const auto H = static_cast<std::int64_t>(Hs), N = static_cast<std::int64_t>(Ns);
    const std::string& nm = l->name;
    const auto nu_log = p.take(nm + ".nu_log", {N});
    const auto theta_log = p.take(nm + ".theta_log", {N});
    const auto gamma_log = p.take(nm + ".gamma_log", {N});
    const auto B_re = p.take(nm + ".B_re", {N, H});
    const auto B_im = p.take(nm + ".B_im", {N, H});
    const auto C_re = p.take(nm + ".C_re", {H, N});
    const auto C_im = p.take(nm + ".C_im", {H, N});
    const auto D = p.take(nm + ".D", {H});

    using cd = std::complex<double>;
    std::vector<cd> lam(Ns), B(Ns * Hs), C(Hs * Ns);
    for (std::size_t n = 0; n < Ns; ++n) {
        lam[n] = std::exp(cd(-std::exp(nu_log[n]), std::exp(theta_log[n])));
        const double g = std::exp(gamma_log[n]);
        if (!std::isfinite(lam[n].real()) || !std::isfinite(lam[n].imag()) || !std::isfinite(g) || std::abs(lam[n]) > 1.0)
            throw ConfigError("layer " + layer_label(c) + ": state " + std::to_string(n) +
                              ": nu_log/theta_log/gamma_log give a non-finite or growing recurrence (|λ| > 1)");
        for (std::size_t h = 0; h < Hs; ++h) B[n * Hs + h] = g * cd(B_re[n * Hs + h], B_im[n * Hs + h]);
    }
    for (std::size_t i = 0; i < Hs * Ns; ++i) C[i] = cd(C_re[i], C_im[i]);
    l->m.set(lam, B, C, D);
    l->act.load(c, p, Hs);
    return l;
}

}  // namespace ssm::detail
