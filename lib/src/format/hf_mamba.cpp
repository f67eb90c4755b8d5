// Importer of Mamba-family checkpoint directories (transformers and mamba_ssm saves), see ssmstream/checkpoint.hpp.
// Tensor names are kept as saved, so the native layers' `name`s are the checkpoint's module paths; a tied LM head
// becomes an explicit `lm_head.weight`. Config fields fall in three sets per format: those that set the maths (read
// and honoured), those that cannot change inference (initialisation, generation, bookkeeping: accepted), and the
// rest (rejected: an unknown field may change the maths).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "ssmstream/checkpoint.hpp"
#include "ssmstream/error.hpp"

namespace ssm {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw FormatError(p.string() + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string text = ss.str();
    if (text.size() > (16u << 20)) throw FormatError(p.string() + ": larger than 16 MiB; not a config");
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw FormatError(p.string() + ": not valid JSON: " + e.what());
    }
}

/** The safetensors files of a checkpoint, with a name → tensor index over all shards. */
struct Weights {
    fs::path dir;
    std::vector<TensorFile> files;
    std::map<std::string, const TensorView*> by_name;
    std::vector<std::string> order;  // file order, for a stable native file

    const TensorView* find(const std::string& n) const {
        const auto it = by_name.find(n);
        return it == by_name.end() ? nullptr : it->second;
    }
};

Weights open_weights(const fs::path& dir) {
    Weights w;
    w.dir = dir;
    std::vector<std::string> names;
    const auto index = dir / "model.safetensors.index.json";
    if (fs::exists(dir / "model.safetensors")) {
        names.push_back("model.safetensors");
    } else if (fs::exists(index)) {
        const auto j = read_json(index);
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw FormatError(index.string() + ": no \"weight_map\" object");
        std::map<std::string, std::string> wm;
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string()) throw FormatError(index.string() + ": weight_map['" + it.key() + "'] is not a file name");
            const auto f = it.value().get<std::string>();
            if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos || f == "." || f == "..")
                throw FormatError(index.string() + ": weight_map['" + it.key() + "'] = '" + f + "' is not a file in the directory");
            wm[it.key()] = f;
            if (std::find(names.begin(), names.end(), f) == names.end()) names.push_back(f);
        }
        std::sort(names.begin(), names.end());
        w.files.reserve(names.size());
        for (const auto& n : names) w.files.push_back(TensorFile::open(dir / n));
        for (const auto& [t, f] : wm) {
            const auto k = static_cast<std::size_t>(std::find(names.begin(), names.end(), f) - names.begin());
            if (w.files[k].find(t) == nullptr)
                throw FormatError(index.string() + ": tensor '" + t + "' is listed in " + f + " but that file does not hold it");
        }
        for (std::size_t k = 0; k < w.files.size(); ++k)
            for (const auto& t : w.files[k].tensors())
                if (!wm.count(t.name) || wm[t.name] != names[k])
                    throw FormatError((dir / names[k]).string() + ": tensor '" + t.name + "' is not in " + index.filename().string() +
                                      "'s weight_map (or is mapped to another shard)");
    } else if (fs::exists(dir / "pytorch_model.bin")) {
        throw FormatError(dir.string() + ": only pytorch_model.bin (a pickle, which this library does not execute); save it "
                          "once as safetensors: python -c \"import torch, safetensors.torch as s; s.save_file(torch.load('" +
                          (dir / "pytorch_model.bin").string() + "'), '" + (dir / "model.safetensors").string() + "')\"");
    } else {
        throw FormatError(dir.string() + ": no model.safetensors or model.safetensors.index.json");
    }
    if (w.files.empty()) w.files.push_back(TensorFile::open(dir / names.front()));
    for (const auto& f : w.files)
        for (const auto& t : f.tensors()) {
            if (!w.by_name.emplace(t.name, &t).second)
                throw FormatError(dir.string() + ": tensor '" + t.name + "' appears in two shards");
            w.order.push_back(t.name);
        }
    return w;
}

/** The config fields of one format, checked against the three sets. */
class Fields {
public:
    Fields(const json& c, std::string file) : c_(c), file_(std::move(file)) {}
    [[noreturn]] void fail(const std::string& what) const { throw ConfigError(file_ + ": " + what); }
    bool has(const char* k) const { return c_.contains(k) && !c_[k].is_null(); }
    std::size_t size(const char* k, std::optional<std::size_t> fallback = std::nullopt) {
        seen_.insert(k);
        if (!has(k)) {
            if (!fallback) fail(std::string("missing \"") + k + "\"");
            return *fallback;
        }
        const auto& v = c_[k];
        if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (1 << 24))
            fail(std::string("\"") + k + "\" must be a positive integer");
        return v.get<std::size_t>();
    }
    double number(const char* k, double fallback) {
        seen_.insert(k);
        if (!has(k)) return fallback;
        if (!c_[k].is_number()) fail(std::string("\"") + k + "\" must be a number");
        return c_[k].get<double>();
    }
    bool boolean(const char* k, bool fallback) {
        seen_.insert(k);
        if (!has(k)) return fallback;
        if (!c_[k].is_boolean()) fail(std::string("\"") + k + "\" must be true or false");
        return c_[k].get<bool>();
    }
    std::string string(const char* k, const std::string& fallback) {
        seen_.insert(k);
        if (!has(k)) return fallback;
        if (!c_[k].is_string()) fail(std::string("\"") + k + "\" must be a string");
        return c_[k].get<std::string>();
    }
    const json& raw(const char* k) {
        seen_.insert(k);
        return c_[k];
    }
    void harmless(std::initializer_list<const char*> ks) { seen_.insert(ks.begin(), ks.end()); }
    /** Fails on any field neither read nor declared harmless. */
    void finish(const std::string& what) const {
        for (auto it = c_.begin(); it != c_.end(); ++it)
            if (!seen_.count(it.key()))
                fail("unknown " + what + " field \"" + it.key() + "\": it may change the maths, so it is not ignored "
                     "(this build does not know it)");
    }

private:
    const json& c_;
    std::string file_;
    std::set<std::string> seen_;
};

// Fields every transformers PretrainedConfig may carry that do not touch the forward pass.
const std::initializer_list<const char*> kHfHarmless = {
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "bos_token_id",
    "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id", "use_cache", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "id2label", "label2id", "problem_type",
    "tokenizer_class", "prefix", "task_specific_params", "finetuning_task", "initializer_range",
    "rescale_prenorm_residual", "time_step_floor", "time_step_init_scheme", "time_step_max", "time_step_min",
    "time_step_scale", "use_mambapy", "use_falcon_mambapy", "use_associative_scan", "chunk_size",
    "fused_add_norm", "is_encoder_decoder", "tie_encoder_decoder", "max_length", "min_length"};

double json_float(const json& v, const std::string& what, const Fields& f) {
    if (v.is_number()) return v.get<double>();
    if (v.is_null()) return INFINITY;
    if (v.is_object() && v.contains("__float__") && v["__float__"].is_string()) {  // transformers' JSON for ±inf/nan
        const auto s = v["__float__"].get<std::string>();
        if (s == "Infinity") return INFINITY;
        if (s == "-Infinity") return -INFINITY;
    }
    f.fail(what + " must be a number");
}

struct Arch {
    std::string family;  // mamba, mamba2, falcon_mamba
    std::string source;  // transformers, mamba_ssm
    std::string cls;
    std::size_t d_model = 0, n_layer = 0, vocab = 0;
    bool rms_norm = true, tie = true;
    double norm_eps = 1e-5;
    json mixer;  // the mixer layer config without "name"
};

std::size_t auto_dt_rank(std::size_t d_model) { return (d_model + 15) / 16; }

Arch parse_transformers(const json& c, const std::string& file) {
    Fields f(c, file);
    Arch a;
    a.source = "transformers";
    a.family = f.string("model_type", "");
    if (a.family != "mamba" && a.family != "mamba2" && a.family != "falcon_mamba")
        f.fail("model_type '" + a.family + "' is not one this build imports (mamba, mamba2, falcon_mamba)");
    f.harmless(kHfHarmless);
    if (c.contains("architectures") && c["architectures"].is_array() && !c["architectures"].empty() &&
        c["architectures"][0].is_string())
        a.cls = c["architectures"][0].get<std::string>();
    a.d_model = f.size("hidden_size");
    a.n_layer = f.size("num_hidden_layers");
    a.vocab = f.size("vocab_size");
    a.norm_eps = f.number("layer_norm_epsilon", 1e-5);
    a.tie = f.boolean("tie_word_embeddings", a.family != "mamba2");
    f.boolean("residual_in_fp32", true);  // the residual stream is float32 here either way
    // Older saves repeat mamba_ssm's names; they must agree with the transformers ones.
    if (f.has("d_model") && f.size("d_model") != a.d_model) f.fail("\"d_model\" disagrees with \"hidden_size\"");
    if (f.has("n_layer") && f.size("n_layer") != a.n_layer) f.fail("\"n_layer\" disagrees with \"num_hidden_layers\"");
    if (!f.boolean("rms_norm", true) && a.family != "mamba2") f.fail("\"rms_norm\": false is not what transformers builds (RMSNorm only)");
    f.size("pad_vocab_size_multiple", 1);  // transformers' vocab_size is already the padded size
    const auto act = f.string("hidden_act", "silu");
    if (act != "silu" && act != "swish") f.fail("hidden_act '" + act + "' is not supported (silu)");
    const std::size_t expand = f.size("expand", 2), K = f.size("conv_kernel", 4), N = f.size("state_size", 16);
    const bool bias = f.boolean("use_bias", false), conv_bias = f.boolean("use_conv_bias", true);
    if (a.family == "mamba2") {
        const std::size_t E = expand * a.d_model;
        const std::size_t H = f.size("num_heads", 128), P = f.size("head_dim", 64), G = f.size("n_groups", 8);
        if (H * P != E) f.fail("num_heads * head_dim (" + std::to_string(H * P) + ") must equal expand * hidden_size (" + std::to_string(E) + ")");
        if (H % G) f.fail("num_heads must be a multiple of n_groups");
        f.raw("time_step_rank");  // unused by Mamba-2's mixer
        if (f.has("rms_norm") && !f.boolean("rms_norm", true)) f.fail("\"rms_norm\": false is not what transformers' Mamba2 builds");
        if (f.boolean("norm_before_gate", false)) f.fail("\"norm_before_gate\": true is not what transformers' Mamba2 computes");
        double lo = 0.0, hi = INFINITY;
        if (f.has("time_step_limit")) {
            const auto& lim = f.raw("time_step_limit");
            if (!lim.is_array() || lim.size() != 2) f.fail("\"time_step_limit\" must be [low, high]");
            lo = json_float(lim[0], "time_step_limit[0]", f);
            hi = json_float(lim[1], "time_step_limit[1]", f);
        }
        a.mixer = {{"type", "mamba2"}, {"d_model", a.d_model}, {"d_inner", E}, {"d_state", N}, {"d_conv", K},
                   {"head_dim", P}, {"n_groups", G}, {"bias", bias}, {"conv_bias", conv_bias}, {"norm_eps", a.norm_eps},
                   {"dt_limit", json::array({lo, std::isinf(hi) ? json(nullptr) : json(hi)})},
                   {"chunk_size", f.size("chunk_size", 256)}};
    } else {
        const std::size_t E = expand * a.d_model;
        if (f.has("intermediate_size") && f.size("intermediate_size") != E) f.fail("\"intermediate_size\" must be expand * hidden_size");
        if (f.has("d_inner") && f.size("d_inner") != E) f.fail("\"d_inner\" must be expand * hidden_size");
        std::size_t R = auto_dt_rank(a.d_model);
        if (f.has("time_step_rank")) {
            const auto& r = f.raw("time_step_rank");
            if (!(r.is_string() && r == "auto")) R = f.size("time_step_rank");
        }
        a.mixer = {{"type", "mamba"}, {"d_model", a.d_model}, {"d_inner", E}, {"d_state", N}, {"d_conv", K},
                   {"dt_rank", R}, {"bias", bias}, {"conv_bias", conv_bias}};
        if (a.family == "falcon_mamba") a.mixer["bcdt_rms_eps"] = f.number("mixer_rms_eps", 1e-6);
    }
    f.finish("config.json");
    return a;
}

Arch parse_mamba_ssm(const json& c, const std::string& file) {
    Fields f(c, file);
    Arch a;
    a.source = "mamba_ssm";
    a.cls = "MambaLMHeadModel";
    a.d_model = f.size("d_model");
    a.n_layer = f.size("n_layer");
    const std::size_t vocab = f.size("vocab_size"), mult = f.size("pad_vocab_size_multiple", 8);
    a.vocab = (vocab + mult - 1) / mult * mult;  // MambaLMHeadModel pads the vocabulary
    if (c.contains("d_intermediate")) {
        const auto& v = f.raw("d_intermediate");
        if (!(v.is_number_integer() && v == 0)) f.fail("\"d_intermediate\" other than 0 (an MLP after each mixer) is not supported yet");
    }
    if (f.has("attn_layer_idx") && !(c["attn_layer_idx"].is_array() && c["attn_layer_idx"].empty()))
        f.fail("\"attn_layer_idx\": attention layers are not supported yet");
    f.harmless({"attn_layer_idx", "attn_cfg", "fused_add_norm", "initializer_cfg"});
    a.rms_norm = f.boolean("rms_norm", true);
    a.norm_eps = f.number("norm_epsilon", 1e-5);
    f.boolean("residual_in_fp32", true);
    a.tie = f.boolean("tie_embeddings", true);
    json ssm = c.contains("ssm_cfg") ? c["ssm_cfg"] : json::object();
    f.harmless({"ssm_cfg"});
    f.finish("config.json");
    if (!ssm.is_object()) f.fail("\"ssm_cfg\" must be an object");
    Fields s(ssm, file + " ssm_cfg");
    const auto layer = s.string("layer", "Mamba1");
    s.harmless({"dt_min", "dt_max", "dt_init", "dt_scale", "dt_init_floor", "use_fast_path", "A_init_range", "conv_init",
                "process_group", "sequence_parallel", "device", "dtype", "layer_idx", "chunk_size"});
    const std::size_t N = s.size("d_state", layer == "Mamba2" ? 128 : 16), K = s.size("d_conv", 4), expand = s.size("expand", 2);
    const std::size_t E = expand * a.d_model;
    const bool conv_bias = s.boolean("conv_bias", true), bias = s.boolean("bias", false);
    if (layer == "Mamba1") {
        a.family = "mamba";
        std::size_t R = auto_dt_rank(a.d_model);
        if (s.has("dt_rank")) {
            const auto& r = s.raw("dt_rank");
            if (!(r.is_string() && r == "auto")) R = s.size("dt_rank");
        }
        a.mixer = {{"type", "mamba"}, {"d_model", a.d_model}, {"d_inner", E}, {"d_state", N}, {"d_conv", K},
                   {"dt_rank", R}, {"bias", bias}, {"conv_bias", conv_bias}};
    } else if (layer == "Mamba2") {
        a.family = "mamba2";
        const std::size_t P = s.size("headdim", 64), G = s.size("ngroups", 1);
        if (s.has("d_ssm") && s.size("d_ssm") != E) s.fail("\"d_ssm\" other than expand * d_model is not supported yet");
        if (E % P || (E / P) % G) s.fail("expand * d_model must be a multiple of headdim, and the heads of ngroups");
        const auto act = s.string("activation", "silu");
        if (act != "silu" && act != "swish") s.fail("activation '" + act + "' is not supported (silu)");
        double lo = 0.0, hi = INFINITY;
        if (s.has("dt_limit")) {
            const auto& lim = s.raw("dt_limit");
            if (!lim.is_array() || lim.size() != 2) s.fail("\"dt_limit\" must be [low, high]");
            lo = json_float(lim[0], "dt_limit[0]", s);
            hi = json_float(lim[1], "dt_limit[1]", s);
        }
        a.mixer = {{"type", "mamba2"}, {"d_model", a.d_model}, {"d_inner", E}, {"d_state", N}, {"d_conv", K},
                   {"head_dim", P}, {"n_groups", G}, {"bias", bias}, {"conv_bias", conv_bias},
                   {"norm", s.boolean("rmsnorm", true)}, {"norm_before_gate", s.boolean("norm_before_gate", false)},
                   {"norm_eps", 1e-5}, {"d_per_channel", s.boolean("D_has_hdim", false)},
                   {"dt_limit", json::array({lo, std::isinf(hi) ? json(nullptr) : json(hi)})}};
        if (s.has("chunk_size")) a.mixer["chunk_size"] = s.size("chunk_size");
    } else {
        s.fail("layer '" + layer + "' is not supported (Mamba1, Mamba2)");
    }
    s.finish("ssm_cfg");
    return a;
}

}  // namespace

bool is_checkpoint_dir(const fs::path& path) {
    std::error_code ec;
    return fs::is_directory(path, ec) && fs::exists(path / "config.json", ec);
}

namespace {

/** A checkpoint read and validated, its tensors still views into the mapped files. */
struct CheckpointView {
    std::string config_json;
    std::string architecture;
    Weights weights;
    std::vector<TensorView> tensors;  // native names; the tied head is a second view of the embedding
};

CheckpointView read_checkpoint(const fs::path& dir) {
    if (!is_checkpoint_dir(dir)) throw FormatError(dir.string() + ": not a checkpoint directory (no config.json)");
    const auto cfg_path = dir / "config.json";
    const auto c = read_json(cfg_path);
    if (!c.is_object()) throw FormatError(cfg_path.string() + ": not a JSON object");
    const Arch a = c.contains("model_type") ? parse_transformers(c, cfg_path.string()) : c.contains("d_model") && c.contains("n_layer")
                                                                                              ? parse_mamba_ssm(c, cfg_path.string())
                                                                                              : throw ConfigError(cfg_path.string() + ": neither a transformers config (model_type) nor a mamba_ssm one (d_model, n_layer)");
    Weights w = open_weights(dir);
    const std::string label = dir.string();

    // Module paths: `backbone.` for *ForCausalLM and MambaLMHeadModel, none for a bare MambaModel; the embedding is
    // `embeddings` in transformers and `embedding` in mamba_ssm (transformers' load hook renames the latter).
    std::string pre;
    if (w.find("backbone.norm_f.weight")) pre = "backbone.";
    else if (!w.find("norm_f.weight")) throw FormatError(label + ": missing tensor 'backbone.norm_f.weight' (the final norm)");
    std::string emb = pre + "embeddings";
    if (!w.find(emb + ".weight") && w.find(pre + "embedding.weight")) emb = pre + "embedding";
    if (!w.find(emb + ".weight")) throw FormatError(label + ": missing tensor '" + emb + ".weight' (the token embedding)");
    const bool head = !pre.empty();

    auto norm = [&](const std::string& name) {
        json n = {{"type", a.rms_norm ? "rmsnorm" : "layernorm"}, {"name", name}, {"dim", a.d_model}, {"eps", a.norm_eps}};
        return n;
    };
    json layers = json::array();
    layers.push_back({{"type", "embedding"}, {"name", emb}, {"in", 1}, {"vocab", a.vocab}, {"dim", a.d_model}});
    for (std::size_t i = 0; i < a.n_layer; ++i) {
        const std::string b = pre + "layers." + std::to_string(i);
        json mixer = a.mixer;
        mixer["name"] = b + ".mixer";
        layers.push_back({{"type", "residual"}, {"name", b}, {"prenorm", true}, {"body", json::array({norm(b + ".norm"), mixer})}});
    }
    layers.push_back(norm(pre + "norm_f"));
    if (head) layers.push_back({{"type", "linear"}, {"name", "lm_head"}, {"in", a.d_model}, {"out", a.vocab}, {"bias", false}});

    CheckpointView out;
    out.architecture = (a.cls.empty() ? a.family : a.cls) + " (" + a.source + ")";
    const json native = {{"format", "ssmstream"}, {"version", 1}, {"name", dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string()},
                         {"description", out.architecture + ": " + std::to_string(a.n_layer) + " " + a.family + " blocks, d_model " +
                                             std::to_string(a.d_model) + ", vocabulary " + std::to_string(a.vocab) +
                                             (head ? (a.tie ? ", LM head tied to the embedding" : ", LM head") : ", no LM head (hidden states out)")},
                         {"sample_rate", 0}, {"layers", layers}};
    out.config_json = native.dump();
    // A tied head is the embedding, whatever a checkpoint may also hold under lm_head.weight (as transformers ties it).
    const bool tied_head = head && a.tie;
    for (const auto& name : w.order) {
        if (tied_head && name == "lm_head.weight") continue;
        out.tensors.push_back(*w.find(name));
    }
    if (head && (a.tie || !w.find("lm_head.weight"))) {
        if (!a.tie) throw FormatError(label + ": missing tensor 'lm_head.weight' (the config says the LM head is not tied)");
        TensorView t = *w.find(emb + ".weight");
        t.name = "lm_head.weight";
        out.tensors.push_back(std::move(t));
    }
    out.weights = std::move(w);
    return out;
}

}  // namespace

ImportedCheckpoint import_checkpoint(const fs::path& dir) {
    const auto v = read_checkpoint(dir);
    ImportedCheckpoint out{v.config_json, {}, v.architecture};
    for (const auto& t : v.tensors) out.tensors.push_back({t.name, t.shape, TensorFile::to_double(t), t.dtype});
    return out;
}

std::vector<std::byte> encode_native(const ImportedCheckpoint& ckpt) {
    return encode_safetensors({{"ssmstream", ckpt.config_json}}, ckpt.tensors);
}

std::shared_ptr<const Model> load_model(const fs::path& path) {
    if (!is_checkpoint_dir(path)) return Model::load(path);
    // Zero-copy: the model is built straight from the mapped checkpoint files (each layer copies what it keeps).
    auto v = read_checkpoint(path);
    const auto file = TensorFile::compose(path.string(), {{"ssmstream", v.config_json}}, std::move(v.tensors), std::move(v.weights.files));
    return Model::from_tensor_file(file);
}

}  // namespace ssm
