// The model file: encode_safetensors/TensorFile round trips for every dtype (subnormals, ±0, overflow, rounding,
// Inf/NaN), and a corpus of malformed files, each rejected with a clean ssm::Error whose message names the file,
// the tensor (where there is one) and the fault.
//
// The malformed cases are defined once, in malformed_cases() below. They are also kept as files in tests/corpus/
// (seeds for the fuzzer, inputs for `ssm info` by hand), and seed_models() as tests/fuzz/seeds/ (small valid models
// covering every layer family and dtype, the fuzzer's starting points); regenerate both after changing a case with
//     SSM_REGEN_CORPUS=1 ./test_model_file --gtest_filter='Corpus.*'
// Corpus.EveryFileIsRejectedCleanly loads every tests/corpus/*.safetensors (also those added by fuzzing), and
// Corpus.FilesMatchTheGenerator fails when a case and its file drift apart.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
using nlohmann::json;

namespace {

using Bytes = std::vector<std::byte>;

const std::filesystem::path corpus_dir = std::filesystem::path(SSM_SOURCE_DIR) / "tests" / "corpus";
const std::filesystem::path seeds_dir = std::filesystem::path(SSM_SOURCE_DIR) / "tests" / "fuzz" / "seeds";

// ---------------------------------------------------------------------------------------------------------------
// Building files byte by byte

Bytes to_bytes(std::string_view s) {
    Bytes b(s.size());
    if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());  // an empty vector's data() may be null
    return b;
}

void append_u64(Bytes& b, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

/** A safetensors file from a header text and a data section; `declared` overrides the header length field. */
Bytes raw_file(std::string_view header, const Bytes& body = {}, std::optional<std::uint64_t> declared = {}) {
    Bytes b;
    append_u64(b, declared.value_or(header.size()));
    const auto h = to_bytes(header);
    b.insert(b.end(), h.begin(), h.end());
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

Bytes f32_bytes(std::initializer_list<float> values) {
    Bytes b(values.size() * 4);
    std::size_t i = 0;
    for (float v : values) std::memcpy(b.data() + 4 * i++, &v, 4);
    return b;
}

Bytes zeros(std::size_t n) { return Bytes(n, std::byte{0}); }

/** A header entry for one tensor. */
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, std::uint64_t b,
                  std::uint64_t e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
}

// ---------------------------------------------------------------------------------------------------------------
// A small valid model (every layer family the corpus mutates), as config + tensors so cases can break one thing

struct Parts {
    json cfg;
    std::vector<TensorData> tensors;
    std::map<std::string, std::string> extra_metadata;

    TensorData& tensor(const std::string& name) {
        for (auto& t : tensors)
            if (t.name == name) return t;
        throw std::logic_error("no tensor " + name);
    }
    void remove(const std::string& name) {
        std::erase_if(tensors, [&](const TensorData& t) { return t.name == name; });
    }
    json& layer(std::size_t i) { return cfg["layers"][i]; }
    Bytes encode() const {
        auto meta = extra_metadata;
        meta["ssmstream"] = cfg.dump();
        return encode_safetensors(meta, tensors);
    }
};

/** Deterministic values, exact in float and double whatever the compiler (dyadic: no rounding, fused or not), so the
 * corpus files are the same bytes on every build. `scale` and `offset` are powers of two or small dyadics. */
TensorData det_tensor(const std::string& name, std::vector<std::int64_t> shape, double scale, double offset, int phase) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    TensorData t{name, std::move(shape), std::vector<double>(n), DType::F32};
    for (std::size_t i = 0; i < n; ++i)
        t.values[i] = offset + scale * (static_cast<double>((i * 7 + static_cast<std::size_t>(phase)) % 17) - 8.0) / 8.0;
    return t;
}

Parts valid_parts() {
    Parts p;
    p.cfg = {{"format", "ssmstream"},
             {"version", 1},
             {"name", "corpus-base"},
             {"sample_rate", 8000},
             {"layers",
              {{{"type", "linear"}, {"name", "enc"}, {"in", 2}, {"out", 4}},
               {{"type", "residual"},
                {"prenorm", true},
                {"norm", {{"type", "layernorm"}, {"name", "norm0"}, {"dim", 4}}},
                {"body",
                 {{{"type", "s4d"}, {"name", "s4"}, {"d_model", 4}, {"d_state", 4}, {"disc", "zoh"},
                   {"activation", "gelu"}, {"output", "glu"}}}}},
               {{"type", "gelu"}},
               {{"type", "linear"}, {"name", "dec"}, {"in", 4}, {"out", 1}}}}};
    p.tensors = {
        det_tensor("enc.weight", {4, 2}, 0.5, 0.0, 1),
        det_tensor("enc.bias", {4}, 0.125, 0.0, 2),
        det_tensor("norm0.weight", {4}, 0.125, 1.0, 3),
        det_tensor("norm0.bias", {4}, 0.125, 0.0, 4),
        det_tensor("s4.kernel.log_dt", {4}, 1.0, -3.0, 5),
        det_tensor("s4.kernel.log_A_real", {4, 2}, 0.25, -0.75, 6),
        det_tensor("s4.kernel.A_imag", {4, 2}, 1.0, 3.0, 7),
        det_tensor("s4.kernel.C", {4, 2, 2}, 0.5, 0.0, 8),
        det_tensor("s4.D", {4}, 1.0, 0.0, 9),
        det_tensor("s4.output_linear.0.weight", {8, 4, 1}, 0.5, 0.0, 10),
        det_tensor("s4.output_linear.0.bias", {8}, 0.125, 0.0, 11),
        det_tensor("dec.weight", {1, 4}, 0.5, 0.0, 12),
        det_tensor("dec.bias", {1}, 0.125, 0.0, 13),
    };
    return p;
}

template <class F>
Bytes mutated(F&& f) {
    auto p = valid_parts();
    f(p);
    return p.encode();
}

/** A tensor file that is valid at the container level: one F32 tensor "a" of 2 values. */
const std::string tiny_entry = entry("a", "F32", "[2]", 0, 8);
const Bytes tiny_body = f32_bytes({1.0f, 2.0f});

// ---------------------------------------------------------------------------------------------------------------
// The corpus

enum class Kind { format, config };

struct Case {
    std::string name;  ///< also the corpus file name (without .safetensors)
    Bytes bytes;
    Kind kind;
    std::vector<std::string> needles;  ///< substrings the message must contain (besides the label)
};

std::vector<Case> malformed_cases() {
    std::vector<Case> c;
    const auto F = Kind::format;
    const auto C = Kind::config;
    const Bytes good = valid_parts().encode();
    std::uint64_t good_n = 0;
    std::memcpy(&good_n, good.data(), 8);
    auto cut = [&](std::size_t n) { return Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)); };

    // --- length field and truncation
    c.push_back({"empty", {}, F, {"file too short", "(0 bytes)"}});
    c.push_back({"short_5_bytes", to_bytes(std::string_view("\x10\0\0\0\0", 5)), F, {"file too short", "(5 bytes)"}});
    c.push_back({"header_len_over_100MiB", raw_file("{}", {}, (100ull << 20) + 1), F,
                 {"header length 104857601", "exceeds the 100 MiB limit"}});
    c.push_back({"header_len_max_u64", raw_file("{}", {}, ~std::uint64_t{0}), F, {"exceeds the 100 MiB limit"}});
    c.push_back({"header_len_past_eof", raw_file("{" + tiny_entry + "}", tiny_body, 5000), F,
                 {"header length 5000", "runs past the end of the file", "truncated"}});
    c.push_back({"header_len_zero", raw_file("", tiny_body), F, {"header too short"}});
    c.push_back({"truncated_in_length", cut(4), F, {"file too short", "(4 bytes)"}});
    c.push_back({"truncated_in_header", cut(8 + good_n / 2), F, {"runs past the end of the file"}});
    c.push_back({"truncated_after_header", cut(8 + good_n), F,
                 {"tensor '", "is past the data section (0 bytes)", "truncated file or lying header"}});
    c.push_back({"truncated_mid_data", cut(good.size() - 101), F, {"tensor '", "is past the data section"}});
    // The last tensor written is dec.bias: only it runs past a data section one byte short.
    c.push_back({"truncated_last_byte", cut(good.size() - 1), F,
                 {"tensor 'dec.bias'", "data_offsets end", "is past the data section"}});

    // --- offsets
    c.push_back({"lying_header_offsets_past_end", raw_file("{" + tiny_entry + "," + entry("b", "F32", "[998]", 8, 4000) + "}",
                                                           zeros(16)),
                 F, {"tensor 'b'", "data_offsets end 4000 is past the data section (16 bytes)"}});
    c.push_back({"offsets_begin_after_end", raw_file("{" + entry("a", "F32", "[2]", 8, 0) + "}", zeros(8)), F,
                 {"tensor 'a'", "data_offsets begin 8 > end 0"}});
    c.push_back({"offsets_overlap", raw_file("{" + tiny_entry + "," + entry("b", "F32", "[2]", 4, 12) + "}", zeros(12)),
                 F, {"tensor 'b'", "overlaps the previous tensor"}});
    c.push_back({"offsets_gap", raw_file("{" + tiny_entry + "," + entry("b", "F32", "[2]", 12, 20) + "}", zeros(20)), F,
                 {"tensor 'b'", "gap of 4 bytes"}});
    c.push_back({"offsets_gap_at_start", raw_file("{" + entry("a", "F32", "[2]", 4, 12) + "}", zeros(12)), F,
                 {"tensor 'a'", "gap of 4 bytes"}});
    c.push_back({"offsets_not_integers", raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", zeros(8)),
                 F, {"tensor 'a'", "data_offsets must be two non-negative integers"}});
    c.push_back({"offsets_missing", raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", zeros(8)), F,
                 {"tensor 'a'", "data_offsets must be two non-negative integers"}});
    {
        auto b = good;
        for (int i = 0; i < 4; ++i) b.push_back(std::byte{0x55});
        c.push_back({"trailing_bytes", b, F, {"4 trailing bytes after the last tensor"}});
    }

    // --- shapes and dtypes
    c.push_back({"shape_dtype_mismatch", raw_file("{" + entry("a", "F32", "[3]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "shape × dtype size = 12 bytes but data_offsets span 8"}});
    c.push_back({"shape_dtype_mismatch_f16", raw_file("{" + entry("a", "F16", "[2]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "= 4 bytes but data_offsets span 8"}});
    c.push_back({"shape_negative", raw_file("{" + entry("a", "F32", "[-2]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "shape entries must be non-negative integers"}});
    c.push_back({"shape_float", raw_file("{" + entry("a", "F32", "[2.0]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "shape entries must be non-negative integers"}});
    c.push_back({"shape_string", raw_file("{" + entry("a", "F32", "[\"2\"]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "shape entries must be non-negative integers"}});
    c.push_back({"shape_not_array", raw_file("{" + entry("a", "F32", "2", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "missing shape"}});
    // 2^40 × 2^21 F64 elements are 2^64 bytes: a product that wraps to 0 must not pass as an empty tensor.
    c.push_back({"shape_overflow_f64", raw_file("{" + entry("a", "F64", "[1099511627776,2097152]", 0, 0) + "}"), F,
                 {"tensor 'a'", "shape too large"}});
    c.push_back({"shape_overflow_f32", raw_file("{" + entry("a", "F32", "[1099511627776,4194304]", 0, 0) + "}"), F,
                 {"tensor 'a'", "shape too large"}});
    c.push_back({"shape_9_dims", raw_file("{" + entry("a", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "more than 8 dimensions"}});
    c.push_back({"dtype_i8", raw_file("{" + entry("a", "I8", "[8]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "unsupported dtype 'I8'"}});
    c.push_back({"dtype_f8_e4m3", raw_file("{" + entry("a", "F8_E4M3", "[8]", 0, 8) + "}", zeros(8)), F,
                 {"tensor 'a'", "unsupported dtype 'F8_E4M3'"}});
    c.push_back({"dtype_missing", raw_file("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", zeros(8)), F,
                 {"tensor 'a'", "missing or non-string dtype"}});
    c.push_back({"tensor_unknown_field", raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"strides\":[1]}}",
                                                  zeros(8)),
                 F, {"tensor 'a'", "unknown field 'strides'"}});
    c.push_back({"tensor_entry_not_object", raw_file("{\"a\":[0,8]}", zeros(8)), F, {"tensor 'a'", "entry is not an object"}});

    // --- the header JSON
    c.push_back({"duplicate_tensor_name", raw_file("{" + tiny_entry + "," + tiny_entry + "}", tiny_body), F,
                 {"tensor 'a'", "duplicate name in header"}});
    c.push_back({"duplicate_field_in_tensor",
                 raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"data_offsets\":[0,8]}}", tiny_body), F,
                 {"duplicate key 'data_offsets' in 'a'"}});
    c.push_back({"duplicate_metadata_key",
                 raw_file("{\"__metadata__\":{\"ssmstream\":\"{}\",\"ssmstream\":\"{}\"}," + tiny_entry + "}", tiny_body), F,
                 {"duplicate key 'ssmstream' in '__metadata__'"}});
    c.push_back({"bad_utf8_in_name", raw_file("{" + entry("a\xff", "F32", "[2]", 0, 8) + "}", tiny_body), F,
                 {"header is not valid JSON", "UTF-8"}});
    c.push_back({"bad_utf8_overlong", raw_file("{" + entry("a\xc0\xaf", "F32", "[2]", 0, 8) + "}", tiny_body), F,
                 {"header is not valid JSON", "UTF-8"}});
    c.push_back({"bad_utf8_lone_surrogate", raw_file("{" + entry("a\\ud800", "F32", "[2]", 0, 8) + "}", tiny_body), F,
                 {"header is not valid JSON", "surrogate"}});
    c.push_back({"invalid_json", raw_file("{\"a\": {\"dtype\": ", tiny_body), F, {"header is not valid JSON"}});
    c.push_back({"invalid_json_trailing_garbage", raw_file("{" + tiny_entry + "} x", tiny_body), F,
                 {"header is not valid JSON"}});
    c.push_back({"header_not_object", raw_file("[1,2,3]", tiny_body), F, {"header is not a JSON object"}});
    c.push_back({"header_is_string", raw_file("\"abc\"", tiny_body), F, {"header is not a JSON object"}});
    c.push_back({"metadata_not_object", raw_file("{\"__metadata__\":\"ssmstream\"," + tiny_entry + "}", tiny_body), F,
                 {"__metadata__ is not an object"}});
    c.push_back({"metadata_value_not_string",
                 raw_file("{\"__metadata__\":{\"ssmstream\":{\"format\":\"ssmstream\"}}," + tiny_entry + "}", tiny_body), F,
                 {"__metadata__ key 'ssmstream' is not a string"}});
    c.push_back({"tensor_empty_name", raw_file("{" + entry("", "F32", "[2]", 0, 8) + "}", tiny_body), F,
                 {"tensor with an empty name"}});

    // --- the config
    {
        const auto p = valid_parts();
        c.push_back({"missing_ssmstream_metadata", encode_safetensors({{"format", "pt"}}, p.tensors), F,
                     {"no \"ssmstream\" config in __metadata__"}});
        c.push_back({"no_metadata_at_all", encode_safetensors({}, p.tensors), F, {"no \"ssmstream\" config"}});
        c.push_back({"config_invalid_json", encode_safetensors({{"ssmstream", "{\"format\": \"ssmstream\", "}}, p.tensors), F,
                     {"the ssmstream config is not valid JSON"}});
        c.push_back({"config_duplicate_key",
                     encode_safetensors({{"ssmstream", "{\"format\":\"ssmstream\",\"version\":1,\"version\":1,\"layers\":[]}"}},
                                        p.tensors),
                     F, {"the ssmstream config is not valid JSON", "duplicate key 'version'"}});
        c.push_back({"config_not_object", encode_safetensors({{"ssmstream", "[1]"}}, p.tensors), C,
                     {"the ssmstream config is not a JSON object"}});
    }
    c.push_back({"config_unknown_layer_type", mutated([](Parts& p) {
                     p.layer(2) = {{"type", "lstm"}, {"name", "rnn"}};
                 }),
                 C, {"layer 'rnn' (lstm)", "unknown type 'lstm'"}});
    c.push_back({"config_unknown_field", mutated([](Parts& p) { p.cfg["bidirectional"] = true; }), C,
                 {"unknown config field 'bidirectional'"}});
    c.push_back({"config_unknown_layer_field", mutated([](Parts& p) { p.layer(1)["body"][0]["l_max"] = 1024; }), C,
                 {"layer 's4' (s4d)", "unknown field 'l_max'"}});
    c.push_back({"config_wrong_format", mutated([](Parts& p) { p.cfg["format"] = "onnx"; }), C,
                 {"config \"format\" must be \"ssmstream\""}});
    c.push_back({"config_format_not_string", mutated([](Parts& p) { p.cfg["format"] = 7; }), C,
                 {"config \"format\" must be \"ssmstream\""}});
    c.push_back({"config_name_not_string", mutated([](Parts& p) { p.cfg["name"] = json::array(); }), C,
                 {"config \"name\" must be a string"}});
    c.push_back({"config_version_2", mutated([](Parts& p) { p.cfg["version"] = 2; }), C, {"config \"version\" must be 1"}});
    c.push_back({"config_version_wraps_to_1", mutated([](Parts& p) { p.cfg["version"] = 4294967297ull; }), C,
                 {"config \"version\" must be 1"}});
    c.push_back({"config_no_layers", mutated([](Parts& p) { p.cfg["layers"] = json::array(); }), C,
                 {"config has no \"layers\" list"}});
    c.push_back({"config_negative_sample_rate", mutated([](Parts& p) { p.cfg["sample_rate"] = -1; }), C,
                 {"sample_rate must be a non-negative number"}});
    {
        // Residuals nested 40 deep: recursion in the loader is bounded by a nesting limit, not by the stack.
        json layer = {{"type", "relu"}};
        for (int i = 0; i < 40; ++i) layer = {{"type", "residual"}, {"body", json::array({layer})}};
        const json cfg = {{"format", "ssmstream"}, {"version", 1}, {"layers", json::array({layer})}};
        c.push_back({"config_too_deep", encode_safetensors({{"ssmstream", cfg.dump()}}, {}), C, {"nested deeper than"}});
    }

    // --- tensors against the config
    c.push_back({"missing_tensor", mutated([](Parts& p) { p.remove("s4.D"); }), F, {"missing tensor 's4.D'"}});
    c.push_back({"surplus_tensor", mutated([](Parts& p) { p.tensors.push_back(det_tensor("s4.kernel.extra", {3}, 1, 0, 0)); }),
                 F, {"tensor 's4.kernel.extra' is not used by any layer", "1 surplus"}});
    c.push_back({"wrong_shape", mutated([](Parts& p) { p.tensor("enc.weight").shape = {2, 4}; }), F,
                 {"tensor 'enc.weight': shape [2, 4], expected [4, 2]"}});
    c.push_back({"wrong_shape_s4d", mutated([](Parts& p) { p.tensor("s4.kernel.C").shape = {4, 4}; }), F,
                 {"tensor 's4.kernel.C': shape [4, 4], expected [4, 2, 2]"}});
    c.push_back({"nan_in_weights", mutated([](Parts& p) { p.tensor("s4.D").values[1] = std::nan(""); }), F,
                 {"tensor 's4.D': holds NaN or Inf"}});
    c.push_back({"inf_in_weights", mutated([](Parts& p) {
                     p.tensor("enc.bias").values[0] = -std::numeric_limits<double>::infinity();
                 }),
                 F, {"tensor 'enc.bias': holds NaN or Inf"}});
    // 1e6 is finite as a double but overflows F16: the check must look at the converted values.
    c.push_back({"f16_overflow_to_inf", mutated([](Parts& p) {
                     auto& t = p.tensor("dec.bias");
                     t.dtype = DType::F16;
                     t.values[0] = 1e6;
                 }),
                 F, {"tensor 'dec.bias': holds NaN or Inf"}});
    c.push_back({"d_state_odd", mutated([](Parts& p) { p.layer(1)["body"][0]["d_state"] = 3; }), C,
                 {"layer 's4' (s4d)", "d_state must be even", "got 3"}});
    c.push_back({"residual_changes_width", mutated([](Parts& p) {
                     p.layer(1)["body"] = {{{"type", "linear"}, {"name", "narrow"}, {"in", 4}, {"out", 2}}};
                     for (const auto* n : {"s4.kernel.log_dt", "s4.kernel.log_A_real", "s4.kernel.A_imag", "s4.kernel.C", "s4.D",
                                           "s4.output_linear.0.weight", "s4.output_linear.0.bias"})
                         p.remove(n);
                     p.tensors.push_back(det_tensor("narrow.weight", {2, 4}, 0.5, 0, 0));
                     p.tensors.push_back(det_tensor("narrow.bias", {2}, 0.5, 0, 0));
                 }),
                 C, {"body maps 4 channels to 2", "a residual body must keep the width"}});
    c.push_back({"zero_width_layer", mutated([](Parts& p) { p.layer(3)["out"] = 0; }), C,
                 {"layer 'dec' (linear)", "field 'out' must be an integer in [1, 2^20]"}});
    c.push_back({"zero_width_first_layer", mutated([](Parts& p) { p.layer(0)["in"] = 0; }), C,
                 {"the first layer must declare its input width"}});
    c.push_back({"width_mismatch_between_layers", mutated([](Parts& p) {
                     p.layer(3)["in"] = 3;
                     p.tensor("dec.weight").shape = {1, 3};
                     p.tensor("dec.weight").values.pop_back();
                 }),
                 C, {"layer 'dec' (linear)", "expects 3 input channels but receives 4"}});
    return c;
}

/** Small valid models for the fuzzer's seed corpus (tests/fuzz/seeds): every layer family and dtype. */
std::vector<std::pair<std::string, Bytes>> seed_models() {
    std::vector<std::pair<std::string, Bytes>> v;
    v.emplace_back("base", valid_parts().encode());
    {
        auto p = valid_parts();
        const DType order[] = {DType::F16, DType::BF16, DType::F64, DType::F32};
        for (std::size_t i = 0; i < p.tensors.size(); ++i) p.tensors[i].dtype = order[i % 4];
        v.emplace_back("base_mixed_dtypes", p.encode());
    }
    {
        Parts p;
        p.cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "pointwise-zoo"}, {"description", "every pointwise layer"},
                 {"sample_rate", 0}, {"latency_samples", 0},
                 {"layers",
                  {{{"type", "linear"}, {"name", "fc"}, {"in", 3}, {"out", 6}, {"bias", false}},
                   {{"type", "batchnorm"}, {"name", "bn"}, {"dim", 6}, {"eps", 1e-3}},
                   {{"type", "silu"}},
                   {{"type", "glu"}},
                   {{"type", "tanh"}},
                   {{"type", "relu"}},
                   {{"type", "sigmoid"}},
                   {{"type", "gelu"}, {"approximate", "tanh"}},
                   {{"type", "layernorm"}, {"name", "ln"}, {"dim", 3}, {"eps", 1e-6}},
                   {{"type", "linear"}, {"name", "out"}, {"in", 3}, {"out", 2}}}}};
        p.tensors = {det_tensor("fc.weight", {6, 3, 1}, 0.5, 0, 1),  det_tensor("bn.weight", {6}, 0.125, 1, 2),
                     det_tensor("bn.bias", {6}, 0.125, 0, 3),          det_tensor("bn.running_mean", {6}, 0.125, 0, 4),
                     det_tensor("bn.running_var", {6}, 0.125, 1, 5),   det_tensor("bn.num_batches_tracked", {}, 0, 100, 0),
                     det_tensor("ln.weight", {3}, 0.125, 1, 6),        det_tensor("ln.bias", {3}, 0.125, 0, 7),
                     det_tensor("out.weight", {2, 3}, 0.5, 0, 8),    det_tensor("out.bias", {2}, 0.125, 0, 9)};
        v.emplace_back("pointwise_zoo", p.encode());
    }
    {
        Parts p;
        p.cfg = {{"format", "ssmstream"}, {"version", 1}, {"sample_rate", 44100},
                 {"layers",
                  {{{"type", "linear"}, {"name", "enc"}, {"in", 1}, {"out", 2}},
                   {{"type", "residual"}, {"prenorm", false}, {"norm", {{"type", "batchnorm"}, {"name", "bn"}, {"dim", 2}}},
                    {"body", {{{"type", "s4d"}, {"name", "a"}, {"d_model", 2}, {"d_state", 2}, {"disc", "bilinear"},
                               {"activation", "none"}, {"output", "linear"}}}}},
                   {{"type", "residual"}, {"norm", nullptr},
                    {"body", {{{"type", "s4d"}, {"name", "b"}, {"d_model", 2}, {"d_state", 4}, {"disc", "zoh"},
                               {"activation", "tanh"}, {"output", "none"}}}}},
                   {{"type", "linear"}, {"name", "dec"}, {"in", 2}, {"out", 1}, {"bias", false}}}}};
        p.tensors = {det_tensor("enc.weight", {2, 1}, 0.5, 0, 1), det_tensor("enc.bias", {2}, 0.125, 0, 2),
                     det_tensor("bn.weight", {2}, 0.125, 1, 3), det_tensor("bn.bias", {2}, 0.125, 0, 4),
                     det_tensor("bn.running_mean", {2}, 0.125, 0, 5), det_tensor("bn.running_var", {2}, 0.125, 1, 6)};
        for (const auto& [nm, n2] : {std::pair<std::string, std::int64_t>{"a", 1}, {"b", 2}}) {
            p.tensors.push_back(det_tensor(nm + ".kernel.log_dt", {2}, 1.0, -3.0, 7));
            p.tensors.push_back(det_tensor(nm + ".kernel.log_A_real", {2, n2}, 0.25, -0.75, 8));
            p.tensors.push_back(det_tensor(nm + ".kernel.A_imag", {2, n2}, 1.0, 3.0, 9));
            p.tensors.push_back(det_tensor(nm + ".kernel.C", {2, n2, 2}, 0.5, 0, 10));
            p.tensors.push_back(det_tensor(nm + ".kernel.B", {2, n2, 2}, 0.5, 0.5, 11));
            p.tensors.push_back(det_tensor(nm + ".D", {2}, 1.0, 0, 12));
        }
        p.tensors.push_back(det_tensor("a.output_linear.0.weight", {2, 2}, 0.5, 0, 13));
        p.tensors.push_back(det_tensor("a.output_linear.0.bias", {2}, 0.125, 0, 14));
        p.tensors.push_back(det_tensor("dec.weight", {1, 2}, 0.5, 0, 15));
        v.emplace_back("s4d_bilinear_postnorm_batchnorm", p.encode());
    }
    {
        S4DModelSpec s;
        s.d_model = 4;
        s.d_state = 4;
        s.n_layers = 1;
        s.prenorm = true;
        v.emplace_back("s4_example", make_s4d_model_bytes(s));
    }
    return v;
}

struct Outcome {
    std::string kind;  ///< "ok", "FormatError", "ConfigError", "Error"
    std::string message;
};

/** Parses and builds `bytes` as a model; any exception other than ssm::Error escapes and fails the test. */
Outcome load_bytes(const Bytes& bytes, const std::string& label) {
    try {
        const auto f = TensorFile::from_bytes(bytes, label);
        const auto m = Model::from_tensor_file(f);
        return {"ok", ""};
    } catch (const FormatError& e) {
        return {"FormatError", e.what()};
    } catch (const ConfigError& e) {
        return {"ConfigError", e.what()};
    } catch (const Error& e) {
        return {"Error", e.what()};
    }
}

Outcome load_path(const std::filesystem::path& p) {
    try {
        const auto m = Model::load(p);
        return {"ok", ""};
    } catch (const FormatError& e) {
        return {"FormatError", e.what()};
    } catch (const ConfigError& e) {
        return {"ConfigError", e.what()};
    } catch (const Error& e) {
        return {"Error", e.what()};
    }
}

void expect_rejected(const Outcome& o, Kind kind, const std::string& label, const std::vector<std::string>& needles,
                     const std::string& what) {
    EXPECT_EQ(o.kind, kind == Kind::format ? "FormatError" : "ConfigError") << what << ": " << o.message;
    EXPECT_EQ(o.message.rfind(label + ": ", 0), 0u) << what << ": message does not start with the label '" << label
                                                    << "': " << o.message;
    for (const auto& n : needles)
        EXPECT_NE(o.message.find(n), std::string::npos) << what << ": message lacks \"" << n << "\": " << o.message;
}

Bytes read_file(const std::filesystem::path& p) {
    std::ifstream is(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(is)), std::istreambuf_iterator<char>());
    Bytes b(c.size());
    if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
    return b;
}

std::vector<std::filesystem::path> corpus_files() {
    std::vector<std::filesystem::path> v;
    if (std::filesystem::is_directory(corpus_dir))
        for (const auto& e : std::filesystem::directory_iterator(corpus_dir))
            if (e.is_regular_file() && e.path().extension() == ".safetensors") v.push_back(e.path());
    std::sort(v.begin(), v.end());
    return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips

std::uint16_t raw_u16(const TensorView& t, std::size_t i) {
    std::uint16_t v;
    std::memcpy(&v, t.bytes.data() + 2 * i, 2);
    return v;
}

/** `expected` == `got`, bit for bit for ±0 and Inf, as "is NaN" for NaN. */
void expect_same_float(double expected, double got, const std::string& what) {
    if (std::isnan(expected)) {
        EXPECT_TRUE(std::isnan(got)) << what << ": got " << got;
        return;
    }
    EXPECT_EQ(expected, got) << what;
    EXPECT_EQ(std::signbit(expected), std::signbit(got)) << what << ": sign of " << expected;
}

struct Conv {
    double in;
    double out;  ///< what the stored value reads back as
};

/** Encodes `cases` as one tensor of `dtype` and reads it back through to_float and to_double. */
void check_conversion(DType dtype, const std::vector<Conv>& cases) {
    std::vector<double> in;
    for (const auto& c : cases) in.push_back(c.in);
    const auto bytes = encode_safetensors({}, {{"t", {static_cast<std::int64_t>(in.size())}, in, dtype}});
    const auto f = TensorFile::from_bytes(bytes, "conv");
    ASSERT_EQ(f.tensors().size(), 1u);
    const auto& t = f.tensors()[0];
    EXPECT_EQ(t.dtype, dtype);
    EXPECT_EQ(t.bytes.size(), in.size() * dtype_size(dtype));
    const auto fl = TensorFile::to_float(t);
    const auto db = TensorFile::to_double(t);
    ASSERT_EQ(fl.size(), in.size());
    ASSERT_EQ(db.size(), in.size());
    for (std::size_t i = 0; i < cases.size(); ++i) {
        const std::string what = std::string(to_string(dtype)) + " value " + std::to_string(i) + " (" +
                                 std::to_string(cases[i].in) + ")";
        expect_same_float(cases[i].out, db[i], what + " to_double");
        expect_same_float(static_cast<float>(cases[i].out), fl[i], what + " to_float");
    }
}

}  // namespace

TEST(RoundTrip, F32IsExactIncludingSubnormalsZerosInfAndNaN) {
    const float dmin = std::numeric_limits<float>::denorm_min();
    const float fmax = std::numeric_limits<float>::max();
    const double inf = std::numeric_limits<double>::infinity();
    // Stored as float: a double input is rounded to float once, then read back exactly.
    check_conversion(DType::F32, {{0.0, 0.0}, {-0.0, -0.0}, {1.0, 1.0}, {-2.5, -2.5}, {dmin, dmin}, {-dmin, -dmin},
                                  {1e-40, static_cast<float>(1e-40)}, {fmax, fmax}, {-fmax, -fmax},
                                  {0.1, static_cast<float>(0.1)}, {M_PI, static_cast<float>(M_PI)},
                                  {1e39, inf}, {inf, inf}, {-inf, -inf}, {std::nan(""), std::nan("")}});
}

TEST(RoundTrip, F64IsExact) {
    const double dmin = std::numeric_limits<double>::denorm_min();
    const double dmax = std::numeric_limits<double>::max();
    const double inf = std::numeric_limits<double>::infinity();
    check_conversion(DType::F64, {{0.0, 0.0}, {-0.0, -0.0}, {0.1, 0.1}, {M_PI, M_PI}, {dmin, dmin}, {-1e-310, -1e-310},
                                  {dmax, dmax}, {-dmax, -dmax}, {1e300, 1e300}, {inf, inf}, {-inf, -inf},
                                  {std::nan(""), std::nan("")}});
    // to_float of a double beyond float range saturates to Inf; subnormal doubles flush to ±0.
    const auto bytes = encode_safetensors({}, {{"t", {3}, {1e300, -1e-310, 1.0 / 3.0}, DType::F64}});
    const auto f = TensorFile::from_bytes(bytes, "f64");
    const auto fl = TensorFile::to_float(f.tensors()[0]);
    EXPECT_EQ(fl[0], std::numeric_limits<float>::infinity());
    EXPECT_EQ(fl[1], 0.0f);
    EXPECT_TRUE(std::signbit(fl[1]));
    EXPECT_EQ(fl[2], 1.0f / 3.0f);
}

TEST(RoundTrip, F16RoundsToNearestEvenWithSubnormalsAndOverflow) {
    const double inf = std::numeric_limits<double>::infinity();
    const double u = std::ldexp(1.0, -24);  // the smallest F16 subnormal
    check_conversion(DType::F16, {
                                     {0.0, 0.0},
                                     {-0.0, -0.0},
                                     {1.0, 1.0},
                                     {-2.5, -2.5},
                                     {65504.0, 65504.0},                     // largest finite
                                     {65519.0, 65504.0},                     // below the halfway point to 2^16
                                     {65520.0, inf},                         // halfway: ties to even, i.e. Inf
                                     {1e6, inf},
                                     {-1e6, -inf},
                                     {std::ldexp(1.0, -14), std::ldexp(1.0, -14)},  // smallest normal
                                     {1023 * u, 1023 * u},                   // largest subnormal
                                     {u, u},
                                     {-u, -u},
                                     {0.5 * u, 0.0},                         // halfway to 0: even is 0
                                     {0.75 * u, u},
                                     {1.5 * u, 2 * u},                       // ties to even
                                     {2.5 * u, 2 * u},
                                     {0.25 * u, 0.0},
                                     {-0.25 * u, -0.0},
                                     {1e-40, 0.0},                           // a float subnormal
                                     {1.0 + std::ldexp(1.0, -11), 1.0},      // halfway between 1 and 1 + 2^-10
                                     {1.0 + 3 * std::ldexp(1.0, -11), 1.0 + std::ldexp(1.0, -9)},
                                     {2049.0, 2048.0},
                                     {2051.0, 2052.0},
                                     {2047.75, 2048.0},                      // carries into the exponent
                                     {0.1, 0.0999755859375},
                                     {inf, inf},
                                     {-inf, -inf},
                                     {std::nan(""), std::nan("")},
                                 });
    // The bit patterns, as PyTorch/NumPy write them.
    const auto bytes = encode_safetensors({}, {{"t", {6}, {1.0, -0.0, inf, 65504.0, u, std::nan("")}, DType::F16}});
    const auto f = TensorFile::from_bytes(bytes, "f16");
    const auto& t = f.tensors()[0];
    EXPECT_EQ(raw_u16(t, 0), 0x3c00);
    EXPECT_EQ(raw_u16(t, 1), 0x8000);
    EXPECT_EQ(raw_u16(t, 2), 0x7c00);
    EXPECT_EQ(raw_u16(t, 3), 0x7bff);
    EXPECT_EQ(raw_u16(t, 4), 0x0001);
    EXPECT_EQ(raw_u16(t, 5) & 0x7c00, 0x7c00);
    EXPECT_NE(raw_u16(t, 5) & 0x03ff, 0);
}

TEST(RoundTrip, BF16RoundsToNearestEven) {
    const double inf = std::numeric_limits<double>::infinity();
    const double bf16_max = std::bit_cast<float>(0x7f7f0000u);
    check_conversion(DType::BF16, {
                                      {0.0, 0.0},
                                      {-0.0, -0.0},
                                      {1.0, 1.0},
                                      {-2.5, -2.5},
                                      {M_PI, 3.140625},
                                      {1.0 + std::ldexp(1.0, -8), 1.0},  // halfway: ties to even
                                      {1.0 + 3 * std::ldexp(1.0, -8), 1.0 + std::ldexp(1.0, -6)},
                                      {1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -20), 1.0 + std::ldexp(1.0, -7)},
                                      {bf16_max, bf16_max},
                                      {std::numeric_limits<float>::max(), inf},  // above the halfway point to Inf
                                      {-std::numeric_limits<float>::max(), -inf},
                                      {std::ldexp(1.0, -126), std::ldexp(1.0, -126)},
                                      {std::ldexp(1.0, -133), std::ldexp(1.0, -133)},  // a subnormal BF16 holds
                                      {std::numeric_limits<float>::denorm_min(), 0.0},
                                      {-std::numeric_limits<float>::denorm_min(), -0.0},
                                      {inf, inf},
                                      {-inf, -inf},
                                      {std::nan(""), std::nan("")},
                                      {-std::nan(""), std::nan("")},
                                  });
    // A signalling NaN whose payload lives only in the low bits must stay NaN (not round to Inf).
    const double snan = std::bit_cast<float>(0x7f800001u);
    check_conversion(DType::BF16, {{snan, std::nan("")}});
    // Relative error of ordinary values ≤ half an ulp = 2^-8 (8 significant bits).
    std::vector<double> vals;
    for (int i = -40; i <= 40; ++i) vals.push_back(std::pow(1.7, i) * (i % 2 ? -1 : 1));
    const auto bytes = encode_safetensors({}, {{"t", {static_cast<std::int64_t>(vals.size())}, vals, DType::BF16}});
    const auto f = TensorFile::from_bytes(bytes, "bf16");
    const auto back = TensorFile::to_double(f.tensors()[0]);
    for (std::size_t i = 0; i < vals.size(); ++i) EXPECT_LE(std::abs(back[i] - vals[i]), std::ldexp(std::abs(vals[i]), -8));
}

TEST(RoundTrip, MixedDtypesShapesAndMetadata) {
    const std::vector<TensorData> in = {
        {"w16", {3}, {1.0, -0.5, 0.25}, DType::F16},  // 6 bytes: the next tensors start unaligned
        {"w32", {2, 2}, {1.5, -2.0, 3.25, 0.0}, DType::F32},
        {"scalar", {}, {7.0}, DType::F64},
        {"empty", {0, 3}, {}, DType::F32},
        {"wbf", {1, 2, 1}, {-1.0, 256.0}, DType::BF16},
        {"w64", {2}, {1e-300, -1e300}, DType::F64},
    };
    const std::map<std::string, std::string> meta = {{"ssmstream", "{\"x\": \"ü, ∞\"}"}, {"other", ""}};
    const auto bytes = encode_safetensors(meta, in);
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ((8 + n) % 8, 0u) << "header is padded to 8 bytes";

    // Through a file too: open() memory-maps instead of copying.
    const auto path = temp_dir() / "mixed.safetensors";
    write_safetensors(path, meta, in);
    for (const auto& f : {TensorFile::from_bytes(bytes, "mixed"), TensorFile::open(path)}) {
        EXPECT_EQ(f.metadata(), meta);
        ASSERT_EQ(f.tensors().size(), in.size());
        for (std::size_t i = 0; i < in.size(); ++i) {
            const auto& t = f.tensors()[i];  // file order = the writer's order
            EXPECT_EQ(t.name, in[i].name);
            EXPECT_EQ(t.dtype, in[i].dtype);
            EXPECT_EQ(t.shape, in[i].shape);
            EXPECT_EQ(t.numel(), in[i].values.size());
            EXPECT_EQ(TensorFile::to_double(t), in[i].values) << t.name;
            EXPECT_EQ(f.find(in[i].name), &t);
        }
        EXPECT_EQ(f.find("nope"), nullptr);
    }
    EXPECT_EQ(TensorFile::open(path).label(), path.string());
}

TEST(RoundTrip, WriterRejectsBadInput) {
    EXPECT_THROW(encode_safetensors({}, {{"a", {2}, {1, 2}}, {"a", {1}, {1}}}), UsageError);
    try {
        encode_safetensors({}, {{"a", {2, 2}, {1, 2, 3}}});
        FAIL() << "no error";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("tensor 'a': shape holds 4 values, given 3"), std::string::npos) << e.what();
    }
}

TEST(RoundTrip, DtypeNames) {
    for (DType d : {DType::F16, DType::BF16, DType::F32, DType::F64}) EXPECT_EQ(dtype_from_string(to_string(d)), d);
    EXPECT_EQ(dtype_size(DType::BF16), 2u);
    EXPECT_EQ(dtype_size(DType::F64), 8u);
    EXPECT_THROW(dtype_from_string("f32"), FormatError);
    EXPECT_THROW(dtype_from_string("U8"), FormatError);
}

TEST(Accepted, OffsetsOrderedByValueNotByKey) {
    // The spec only asks the offsets to tile the data section; the header's key order is free. "a" (first key)
    // holds the second half of the data, "b" the first.
    const auto body = f32_bytes({10, 20, 1, 2, 3});
    const auto bytes = raw_file("{" + entry("a", "F32", "[3]", 8, 20) + "," + entry("b", "F32", "[2]", 0, 8) + "}", body);
    const auto f = TensorFile::from_bytes(bytes, "unordered");
    ASSERT_EQ(f.tensors().size(), 2u);
    EXPECT_EQ(f.tensors()[0].name, "b");  // file order: ascending offsets
    EXPECT_EQ(f.tensors()[1].name, "a");
    EXPECT_EQ(TensorFile::to_float(*f.find("a")), (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(TensorFile::to_float(*f.find("b")), (std::vector<float>{10, 20}));
}

TEST(Accepted, PaddedHeaderEmptyTensorsAndNoTensors) {
    // Trailing spaces pad the header (as the reference writer does); zero-size tensors take no bytes.
    const auto bytes = raw_file("{" + entry("z", "F16", "[0]", 0, 0) + "," + tiny_entry + "," +
                                    entry("y", "BF16", "[4,0]", 8, 8) + "}      ",
                                tiny_body);
    const auto f = TensorFile::from_bytes(bytes, "padded");
    EXPECT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.find("y")->numel(), 0u);
    EXPECT_TRUE(TensorFile::to_float(*f.find("y")).empty());
    EXPECT_EQ(TensorFile::to_float(*f.find("a")), (std::vector<float>{1, 2}));
    EXPECT_NO_THROW(TensorFile::from_bytes(raw_file("{}"), "nothing"));
    EXPECT_NO_THROW(TensorFile::from_bytes(raw_file("{\"__metadata__\":{}}"), "meta only"));
}

TEST(Accepted, TheCorpusBaseModelLoads) {
    // Guards the corpus: every "config" and "tensors" case is one mutation away from this valid model.
    const auto o = load_bytes(valid_parts().encode(), "base");
    ASSERT_EQ(o.kind, "ok") << o.message;
    const auto m = Model::from_tensor_file(TensorFile::from_bytes(valid_parts().encode(), "base"));
    EXPECT_EQ(m->info().in_channels, 2u);
    EXPECT_EQ(m->info().out_channels, 1u);
    EXPECT_EQ(m->info().sample_rate, 8000);
    // Stored in F16/BF16/F64 the same model loads too (the engine converts at load).
    for (DType d : {DType::F16, DType::BF16, DType::F64}) {
        auto p = valid_parts();
        for (auto& t : p.tensors) t.dtype = d;
        const auto o2 = load_bytes(p.encode(), "base-" + std::string(to_string(d)));
        EXPECT_EQ(o2.kind, "ok") << o2.message;
    }
    // The same file reordered on disk (offsets ascending, keys any order) is the same model.
    auto p = valid_parts();
    std::reverse(p.tensors.begin(), p.tensors.end());
    const auto m2 = Model::from_tensor_file(TensorFile::from_bytes(p.encode(), "reversed"));
    const auto in = random_signal(64, 2, 3);
    EXPECT_EQ(run_stream(m, in, 16), run_stream(m2, in, 16));
}

TEST(Malformed, EachCaseIsRejectedWithANamedFault) {
    const auto cases = malformed_cases();
    std::set<std::string> names;
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name";
        EXPECT_LT(c.bytes.size(), 4096u) << "corpus files stay small";
        const std::string label = "case/" + c.name;
        expect_rejected(load_bytes(c.bytes, label), c.kind, label, c.needles, c.name);
    }
}

TEST(Malformed, TruncatedAtEveryLengthIsRejected) {
    const auto good = valid_parts().encode();
    for (std::size_t n = 0; n < good.size(); n += (n < 64 ? 1 : 7)) {
        const Bytes b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
        const auto o = load_bytes(b, "cut");
        EXPECT_EQ(o.kind, "FormatError") << "cut at " << n << ": " << o.message;
        EXPECT_EQ(o.message.rfind("cut: ", 0), 0u) << o.message;
    }
}

TEST(LoadPath, MissingFileDirectoryAndFifo) {
    const auto dir = temp_dir();
    const auto missing = dir / "does-not-exist.safetensors";
    auto o = load_path(missing);
    expect_rejected(o, Kind::format, missing.string(), {"cannot open", "No such file"}, "missing");

    const auto sub = dir / "a-directory.safetensors";
    std::filesystem::create_directories(sub);
    o = load_path(sub);
    expect_rejected(o, Kind::format, sub.string(), {"not a regular file"}, "directory");

    // A FIFO (nobody writing) must be refused at once, not block the loader.
    const auto fifo = dir / "a-fifo.safetensors";
    std::filesystem::remove(fifo);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    o = load_path(fifo);
    expect_rejected(o, Kind::format, fifo.string(), {"not a regular file"}, "fifo");

    const auto good = dir / "good.safetensors";
    write_file_atomically(good, valid_parts().encode());
    EXPECT_EQ(load_path(good).kind, "ok");
}

TEST(LoadPath, UnreadableFile) {
    const auto dir = temp_dir();
    if (::geteuid() == 0) GTEST_SKIP() << "running as root: a file without read permission is still readable, so the "
                                          "permission-denied case cannot be tested";
    const auto locked = dir / "locked.safetensors";
    write_file_atomically(locked, valid_parts().encode());
    ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
    const Outcome o = load_path(locked);
    ::chmod(locked.c_str(), 0600);
    expect_rejected(o, Kind::format, locked.string(), {"cannot open", "Permission denied"}, "unreadable");
}

TEST(Corpus, FilesMatchTheGenerator) {
    const bool regen = std::getenv("SSM_REGEN_CORPUS") != nullptr && std::string(std::getenv("SSM_REGEN_CORPUS")) == "1";
    for (const auto& c : malformed_cases()) {
        const auto p = corpus_dir / (c.name + ".safetensors");
        if (regen) {
            std::filesystem::create_directories(corpus_dir);
            write_file_atomically(p, c.bytes);
            continue;
        }
        ASSERT_TRUE(std::filesystem::exists(p)) << p << " is missing: regenerate with SSM_REGEN_CORPUS=1";
        EXPECT_EQ(read_file(p), c.bytes) << p << " differs from its case: regenerate with SSM_REGEN_CORPUS=1";
    }
    // Seeds are checked for presence and validity, not bytes: s4_example comes from std::normal_distribution,
    // whose output is not specified across standard libraries.
    for (const auto& [name, bytes] : seed_models()) {
        const auto p = seeds_dir / (name + ".safetensors");
        if (regen) {
            std::filesystem::create_directories(seeds_dir);
            write_file_atomically(p, bytes);
            continue;
        }
        ASSERT_TRUE(std::filesystem::exists(p)) << p << " is missing: regenerate with SSM_REGEN_CORPUS=1";
        const auto o = load_path(p);
        EXPECT_EQ(o.kind, "ok") << o.message;
    }
}

TEST(Corpus, FuzzSeedsAreValidModelsThatRun) {
    for (const auto& [name, bytes] : seed_models()) {
        SCOPED_TRACE(name);
        EXPECT_LT(bytes.size(), 4096u);
        const auto o = load_bytes(bytes, name);
        ASSERT_EQ(o.kind, "ok") << o.message;
        const auto m = Model::from_tensor_file(TensorFile::from_bytes(bytes, name));
        const auto out = run_stream(m, random_signal(100, m->info().in_channels, 1), 32);
        EXPECT_GT(rms(out), 0.0);
        for (float x : out) ASSERT_TRUE(std::isfinite(x));
    }
}

TEST(Corpus, EveryFileIsRejectedCleanly) {
    const auto files = corpus_files();
    ASSERT_FALSE(files.empty()) << "no corpus in " << corpus_dir;
    for (const auto& p : files) {
        SCOPED_TRACE(p.string());
        EXPECT_LT(std::filesystem::file_size(p), 4096u);
        const auto o = load_path(p);  // anything but an ssm::Error escapes and fails the test
        EXPECT_NE(o.kind, "ok") << "a corpus file loaded as a model";
        EXPECT_EQ(o.message.rfind(p.string() + ": ", 0), 0u) << o.message;
        // The same bytes through from_bytes (the fuzzer's path) give the same verdict.
        const auto o2 = load_bytes(read_file(p), p.string());
        EXPECT_EQ(o2.kind, o.kind);
        EXPECT_EQ(o2.message, o.message);
    }
}
