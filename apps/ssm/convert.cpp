// `ssm convert`: a native file re-encoded (dtype), or a reference checkpoint turned into the native format.
// Importers live here until the formats grow (lib/src/format/ takes them when the library loads them directly).
#include "convert.hpp"

#include <nlohmann/json.hpp>

#include "ssmstream/ssmstream.hpp"

namespace ssm::app {

namespace {

std::vector<TensorData> all_tensors(const TensorFile& f, DType dtype) {
    std::vector<TensorData> out;
    for (const auto& t : f.tensors()) out.push_back({t.name, t.shape, TensorFile::to_double(t), dtype});
    return out;
}

// The S4 repository's example.py S4Model: encoder, s4_layers.{i} (S4D), norms.{i} (LayerNorm), decoder.
nlohmann::json s4_example_config(const TensorFile& f, const ConvertOptions& o) {
    auto shape = [&](const std::string& n) {
        const auto* t = f.find(n);
        if (!t) throw FormatError(f.label() + ": missing tensor '" + n + "' for an S4 example model");
        return t->shape;
    };
    const auto enc = shape("encoder.weight");
    const auto dec = shape("decoder.weight");
    if (enc.size() != 2 || dec.size() != 2) throw FormatError(f.label() + ": encoder/decoder weights must be 2-D");
    const auto H = enc[0];
    std::size_t layers = 0;
    while (f.find("s4_layers." + std::to_string(layers) + ".kernel.log_dt")) ++layers;
    if (layers == 0) throw FormatError(f.label() + ": no s4_layers.0.kernel.log_dt: not an S4 example state_dict");
    nlohmann::json L = nlohmann::json::array();
    L.push_back({{"type", "linear"}, {"name", "encoder"}, {"in", enc[1]}, {"out", H}});
    for (std::size_t i = 0; i < layers; ++i) {
        const std::string p = "s4_layers." + std::to_string(i);
        const auto la = shape(p + ".kernel.log_A_real");
        if (la.size() != 2) throw FormatError(f.label() + ": tensor '" + p + ".kernel.log_A_real' must be [H, N/2]");
        const auto ow = f.find(p + ".output_linear.0.weight");
        const std::string output = !ow ? "none" : (ow->shape[0] == 2 * H ? "glu" : "linear");
        L.push_back({{"type", "residual"},
                     {"prenorm", o.prenorm},
                     {"norm", {{"type", "layernorm"}, {"name", "norms." + std::to_string(i)}, {"dim", H}}},
                     {"body", {{{"type", "s4d"}, {"name", p}, {"d_model", H}, {"d_state", 2 * la[1]},
                                {"disc", o.disc}, {"activation", o.activation}, {"output", output}}}}});
    }
    L.push_back({{"type", "linear"}, {"name", "decoder"}, {"in", H}, {"out", dec[0]}});
    return {{"format", "ssmstream"}, {"version", 1}, {"name", o.name.empty() ? "s4d-model" : o.name},
            {"description", "imported from a state-spaces/s4 example.py S4Model state_dict (decoder per time step, no pooling)"},
            {"sample_rate", o.sample_rate}, {"layers", L}};
}

}  // namespace

std::string convert_model(const std::filesystem::path& in, const std::filesystem::path& out, const ConvertOptions& o) {
    const auto f = TensorFile::open(in);
    DType dtype = DType::F32;
    if (o.dtype == "f16") dtype = DType::F16;
    else if (o.dtype == "bf16") dtype = DType::BF16;
    else if (o.dtype == "f64") dtype = DType::F64;
    else if (o.dtype != "f32") throw UsageError("--dtype must be f32, f16, bf16 or f64");
    std::map<std::string, std::string> meta;
    std::string what;
    std::vector<TensorData> tensors = all_tensors(f, dtype);
    if (f.metadata().count("ssmstream")) {
        meta = f.metadata();
        what = "native model re-encoded as " + o.dtype;
    } else if (f.find("encoder.weight") && f.find("s4_layers.0.kernel.log_dt")) {
        meta["ssmstream"] = s4_example_config(f, o).dump();
        // num_batches_tracked and other buffers that carry no maths are dropped; anything else must be used.
        std::erase_if(tensors, [](const TensorData& t) { return t.name.ends_with("num_batches_tracked"); });
        what = "S4 example state_dict imported";
    } else {
        throw FormatError(in.string() + ": not a native model and not a recognised reference checkpoint "
                                        "(expected an S4 example.py state_dict: encoder.*, s4_layers.N.*, norms.N.*, decoder.*)");
    }
    // Validate before anything reaches `out`.
    const auto bytes = encode_safetensors(meta, tensors);
    const auto check = TensorFile::from_bytes(bytes, out.string());
    const auto model = Model::from_tensor_file(check);
    write_file_atomically(out, bytes);
    return what + ": " + std::to_string(model->info().parameters) + " parameters, " + std::to_string(model->layers().size()) + " top-level layers";
}

}  // namespace ssm::app
