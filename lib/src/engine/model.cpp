#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#define XXH_INLINE_ALL  // header-only use: no link dependency for the library or its users
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on its own AVX-512 intrinsics (a false positive)
#include <xxhash.h>
#pragma GCC diagnostic pop

#include "layers/layer.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/model.hpp"

namespace ssm {

Model::Model() = default;
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::filesystem::path& path) {
    const auto file = TensorFile::open(path);
    return from_tensor_file(file);
}

std::shared_ptr<const Model> Model::from_tensor_file(const TensorFile& file) {
    using nlohmann::json;
    const auto& label = file.label();
    const auto it = file.metadata().find("ssmstream");
    if (it == file.metadata().end())
        throw FormatError(label + ": no \"ssmstream\" config in __metadata__; not a native model file (a reference "
                                  "checkpoint? convert it with `ssm convert`)");
    // Duplicate keys would be resolved silently (the last wins), so they are rejected; nesting is bounded so that
    // building nested residuals cannot exhaust the stack.
    constexpr std::size_t max_depth = 64;
    std::vector<std::set<std::string>> open_keys;
    std::string duplicate;
    std::size_t depth = 0, deepest = 0;
    json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) {
            deepest = std::max(deepest, ++depth);
            if (event == json::parse_event_t::object_start) open_keys.emplace_back();
        } else if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) {
            --depth;
            if (event == json::parse_event_t::object_end && !open_keys.empty()) open_keys.pop_back();
        } else if (event == json::parse_event_t::key && !open_keys.empty()) {
            const auto k = parsed.get<std::string>();
            if (!open_keys.back().insert(k).second && duplicate.empty()) duplicate = k;
        }
        return true;
    };
    json cfg;
    try {
        cfg = json::parse(it->second, cb);
    } catch (const json::exception& e) {
        throw FormatError(label + ": the ssmstream config is not valid JSON: " + e.what());
    }
    if (!duplicate.empty())
        throw FormatError(label + ": the ssmstream config is not valid JSON: duplicate key '" + duplicate + "'");
    auto fail = [&](const std::string& what) -> void { throw ConfigError(label + ": " + what); };
    if (deepest > max_depth) fail("the ssmstream config is nested deeper than " + std::to_string(max_depth) + " levels");
    if (!cfg.is_object()) fail("the ssmstream config is not a JSON object");
    if (!cfg.contains("format") || cfg["format"] != "ssmstream") fail("config \"format\" must be \"ssmstream\"");
    if (!cfg.contains("version") || !cfg["version"].is_number_integer() || cfg["version"] != 1)
        fail("config \"version\" must be 1 (this build reads version 1)");
    for (const char* k : {"name", "description"})
        if (cfg.contains(k) && !cfg[k].is_string()) fail(std::string("config \"") + k + "\" must be a string");
    for (auto k = cfg.begin(); k != cfg.end(); ++k) {
        static const char* known[] = {"format", "version", "name", "description", "sample_rate", "latency_samples", "layers", "training"};
        if (std::none_of(std::begin(known), std::end(known), [&](const char* s) { return k.key() == s; }))
            fail("unknown config field '" + k.key() + "'");
    }
    if (!cfg.contains("layers") || !cfg["layers"].is_array() || cfg["layers"].empty()) fail("config has no \"layers\" list");
    const auto& first = cfg["layers"][0];

    std::shared_ptr<Model> m(new Model());
    m->config_json_ = it->second;
    auto& info = m->info_;
    info.name = cfg.value("name", std::string("unnamed"));
    info.description = cfg.value("description", std::string());
    if (cfg.contains("sample_rate") && (!cfg["sample_rate"].is_number() || cfg["sample_rate"].get<double>() < 0))
        fail("sample_rate must be a non-negative number");
    info.sample_rate = cfg.value("sample_rate", 0.0);
    if (cfg.contains("latency_samples") && !cfg["latency_samples"].is_number_unsigned()) fail("latency_samples must be a non-negative integer");
    info.latency_samples = cfg.value("latency_samples", std::size_t{0});

    // The model's input width is what its first layer declares (a residual's: its norm's or first body layer's).
    std::function<std::size_t(const json&)> declared = [&](const json& l) -> std::size_t {
        if (!l.is_object()) return 0;
        for (const char* k : {"in", "d_model", "dim", "channels"})
            if (l.contains(k) && l[k].is_number_unsigned()) return l[k].get<std::size_t>();
        if (l.contains("norm") && l["norm"].is_object())
            if (auto w = declared(l["norm"])) return w;
        if (l.contains("body") && l["body"].is_array() && !l["body"].empty()) return declared(l["body"][0]);
        return 0;
    };
    std::size_t width = declared(first);
    if (width == 0 || width > (1u << 20)) fail("the first layer must declare its input width (\"in\", \"d_model\", \"dim\" or \"channels\")");
    info.in_channels = width;
    detail::Params params(file);
    try {
        for (const auto& lc : cfg["layers"]) {
            m->layers_.push_back(detail::make_layer(lc, params, width));
            width = m->layers_.back()->out_width();
        }
    } catch (const FormatError&) {
        throw;
    } catch (const Error& e) {
        throw ConfigError(label + ": " + e.what());
    } catch (const json::exception& e) {  // a value of the wrong JSON type that a layer did not check itself
        throw ConfigError(label + ": bad layer config: " + e.what());
    }
    const auto unused = params.unused();
    if (!unused.empty())
        throw FormatError(label + ": tensor '" + unused.front() + "' is not used by any layer (" +
                          std::to_string(unused.size()) + " surplus); config and weights disagree");
    info.out_channels = width;
    for (const auto& l : m->layers_) {
        info.parameters += l->param_count();
        info.weight_bytes += l->weight_bytes();
        info.state_floats += l->state_size();
        m->max_width_ = std::max({m->max_width_, l->in_width(), l->out_width()});
        l->describe_into(info.layers, "");
    }
    // XXH3 over config, tensor names and weights: a saved state names the model it belongs to. (At ~10+ GB/s it
    // costs a 130M-parameter checkpoint a few tens of ms; the byte-wise FNV-1a it replaced took most of a second.)
    XXH3_state_t hs;
    XXH3_64bits_reset(&hs);
    XXH3_64bits_update(&hs, it->second.data(), it->second.size());
    for (const auto& t : file.tensors()) {
        XXH3_64bits_update(&hs, t.name.data(), t.name.size());
        XXH3_64bits_update(&hs, t.bytes.data(), t.bytes.size());
    }
    m->fingerprint_ = XXH3_64bits_digest(&hs);
    return m;
}

}  // namespace ssm
