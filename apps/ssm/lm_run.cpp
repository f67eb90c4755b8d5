#include "lm_run.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace ssm::app {

namespace fs = std::filesystem;

namespace {

struct NpyHeader {
    std::string descr;
    std::vector<std::uint64_t> shape;
    std::size_t data_offset = 0;
};

// The .npy header (versions 1-3): descr, fortran_order, shape. Throws naming the file.
NpyHeader read_npy_header(std::istream& is, const std::string& path) {
    char magic[8];
    if (!is.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file");
    std::uint32_t hlen = 0;
    unsigned char b[4] = {};
    if (magic[6] == 1) {
        if (!is.read(reinterpret_cast<char*>(b), 2)) throw Error(path + ": truncated .npy header");
        hlen = b[0] | (b[1] << 8);
    } else if (magic[6] == 2 || magic[6] == 3) {
        if (!is.read(reinterpret_cast<char*>(b), 4)) throw Error(path + ": truncated .npy header");
        hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
    } else {
        throw Error(path + ": unsupported .npy version");
    }
    if (hlen > (1u << 20)) throw Error(path + ": .npy header too long");
    std::string h(hlen, '\0');
    if (!is.read(h.data(), hlen)) throw Error(path + ": truncated .npy header");
    NpyHeader out;
    out.data_offset = (magic[6] == 1 ? 10 : 12) + hlen;
    auto value = [&](const char* key) {
        const auto k = h.find(std::string("'") + key + "'");
        if (k == std::string::npos) throw Error(path + ": .npy header lacks '" + key + "'");
        auto v = h.find(':', k);
        if (v == std::string::npos) throw Error(path + ": malformed .npy header");
        ++v;
        while (v < h.size() && h[v] == ' ') ++v;
        return v;
    };
    const auto d = value("descr");
    const auto dend = h.find('\'', d + 1);
    if (h[d] != '\'' || dend == std::string::npos) throw Error(path + ": malformed .npy descr");
    out.descr = h.substr(d + 1, dend - d - 1);
    if (h.compare(value("fortran_order"), 4, "True") == 0) throw Error(path + ": Fortran-ordered .npy is not supported");
    const auto s = value("shape");
    const auto send = h.find(')', s);
    if (h[s] != '(' || send == std::string::npos) throw Error(path + ": malformed .npy shape");
    std::stringstream ss(h.substr(s + 1, send - s - 1));
    std::string tok;
    while (std::getline(ss, tok, ',')) {
        std::erase(tok, ' ');
        if (tok.empty()) continue;
        try {
            std::size_t used = 0;
            out.shape.push_back(std::stoull(tok, &used));
            if (used != tok.size()) throw std::invalid_argument(tok);
        } catch (const std::exception&) {
            throw Error(path + ": malformed .npy shape");
        }
    }
    return out;
}

bool is_int_descr(const std::string& d) {
    return d == "<i8" || d == "<i4" || d == "<i2" || d == "|i1" || d == "<u8" || d == "<u4" || d == "<u2" || d == "|u1";
}

std::vector<std::int64_t> read_tokens(const fs::path& p) {
    std::ifstream is(p, std::ios::binary);
    if (!is) throw Error(p.string() + ": cannot open");
    const auto h = read_npy_header(is, p.string());
    if (!is_int_descr(h.descr))
        throw Error(p.string() + ": token ids must be an integer .npy (int64, int32, …), not '" + h.descr + "'");
    std::uint64_t n = 0;
    if (h.shape.size() == 1) n = h.shape[0];
    else if (h.shape.size() == 2 && (h.shape[1] == 1 || h.shape[0] == 1)) n = h.shape[0] * h.shape[1];
    else throw Error(p.string() + ": token ids must have shape (T,), (T, 1) or (1, T)");
    if (n == 0) throw Error(p.string() + ": zero tokens, nothing to process");
    const std::size_t elem = static_cast<std::size_t>(h.descr[2] - '0');
    const bool is_signed = h.descr[1] == 'i';
    std::vector<unsigned char> raw(n * elem);
    if (!is.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
        throw Error(p.string() + ": truncated: shape promises " + std::to_string(n) + " tokens");
    std::vector<std::int64_t> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t u = 0;
        for (std::size_t k = 0; k < elem; ++k) u |= static_cast<std::uint64_t>(raw[i * elem + k]) << (8 * k);
        if (is_signed && elem < 8 && (u >> (8 * elem - 1)) & 1) u |= ~std::uint64_t{0} << (8 * elem);
        out[i] = static_cast<std::int64_t>(u);
        if (!is_signed && elem == 8 && out[i] < 0) out[i] = -1;
    }
    return out;
}

// A float32 [rows, cols] .npy written to a temporary file and renamed into place when complete.
class NpyOut {
public:
    NpyOut(const fs::path& p, std::size_t rows, std::size_t cols) : final_(p), tmp_(p.string() + ".part") {
        f_ = std::fopen(tmp_.c_str(), "wb");
        if (!f_) throw Error(p.string() + ": cannot write: " + std::strerror(errno));
        std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " + std::to_string(cols) + "), }";
        const std::size_t total = 10 + dict.size() + 1;
        dict.append((64 - total % 64) % 64, ' ');
        dict += '\n';
        const auto len = static_cast<std::uint16_t>(dict.size());
        const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
        put(pre, 10);
        put(dict.data(), dict.size());
    }
    ~NpyOut() {
        if (f_) {
            std::fclose(f_);
            std::remove(tmp_.c_str());
        }
    }
    void put(const void* p, std::size_t n) {
        if (std::fwrite(p, 1, n, f_) != n) throw Error(final_.string() + ": write failed: " + std::strerror(errno));
    }
    void commit() {
        const bool ok = std::fflush(f_) == 0;
        std::fclose(f_);
        f_ = nullptr;
        if (!ok || std::rename(tmp_.c_str(), final_.c_str()) != 0) {
            std::remove(tmp_.c_str());
            throw Error(final_.string() + ": cannot finish writing");
        }
    }

private:
    fs::path final_;
    std::string tmp_;
    std::FILE* f_ = nullptr;
};

std::size_t vocab_of(const Model& m) {
    const auto& l = m.info().layers;
    if (m.info().in_channels != 1 || l.empty() || l.front().rfind("embedding ", 0) != 0)
        throw UsageError("model '" + m.info().name + "' is not a language model (its first layer is not a token embedding); "
                         "token ids are for language models");
    const auto& d = l.front();  // "embedding 'name' V tokens -> D"
    const auto q = d.find('\'', d.find('\'') + 1);
    return std::stoull(d.substr(q + 2));
}

}  // namespace

bool is_token_npy(const fs::path& p) {
    if (p.extension() != ".npy") return false;
    std::ifstream is(p, std::ios::binary);
    if (!is) return false;
    try {
        return is_int_descr(read_npy_header(is, p.string()).descr);
    } catch (const Error&) {
        return false;
    }
}

int run_tokens(const std::shared_ptr<const Model>& model, const fs::path& model_path, const fs::path& in, const fs::path& out,
               const TokenRunOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::size_t vocab = vocab_of(*model);
    if (in.extension() != ".npy") throw UsageError(in.string() + ": a language model takes token ids as an integer .npy");
    if (out.extension() != ".npy") throw UsageError(out.string() + ": logits are written as .npy (float32, T x vocab)");
    const auto tokens = read_tokens(in);
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || static_cast<std::uint64_t>(tokens[i]) >= vocab)
            throw Error(in.string() + ": token " + std::to_string(i) + " is " + std::to_string(tokens[i]) + ", outside the vocabulary [0, " +
                        std::to_string(vocab) + ")");
    const std::size_t V = model->info().out_channels, T = tokens.size();
    std::vector<float> x(tokens.begin(), tokens.end());
    NpyOut writer(out, T, V);
    const std::size_t chunk = 256;  // rows of logits held at once
    std::vector<float> y(chunk * V);
    std::optional<Stream> stream;
    std::optional<Batch> batch;
    if (o.backend == "stream") {
        stream.emplace(model);
        stream->prepare({0, o.block, 0});
    } else {
        BatchOptions bo;
        bo.threads = o.threads;
        batch.emplace(model, bo);
    }
    for (std::size_t t = 0; t < T; t += chunk) {
        const std::size_t n = std::min(chunk, T - t);
        if (stream) {
            for (std::size_t k = 0; k < n; k += o.block) stream->process(x.data() + t + k, y.data() + k * V, std::min(o.block, n - k));
        } else {
            batch->process(x.data() + t, y.data(), n);
        }
        writer.put(y.data(), n * V * sizeof(float));
    }
    writer.commit();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.json) {
        std::cout << nlohmann::json{{"model", model_path.string()}, {"input", in.string()}, {"output", out.string()}, {"tokens", T},
                                    {"vocab", V}, {"backend", stream ? "stream" : "batch"}, {"seconds", secs},
                                    {"tokens_per_second", secs > 0 ? static_cast<double>(T) / secs : 0.0}}
                         .dump(2)
                  << "\n";
    } else if (!o.quiet) {
        std::fprintf(stderr, "ssm: %zu tokens -> logits [%zu, %zu] in %.3f s -> %s\n", T, T, V, secs, out.c_str());
    }
    return 0;
}

std::string convert_checkpoint(const fs::path& dir, const fs::path& out, const std::string& dtype) {
    auto ck = import_checkpoint(dir);
    if (dtype != "keep")
        for (auto& t : ck.tensors)
            t.dtype = dtype == "f16" ? DType::F16 : dtype == "bf16" ? DType::BF16 : dtype == "f64" ? DType::F64 : DType::F32;
    const auto bytes = encode_native(ck);
    Model::from_tensor_file(TensorFile::from_bytes(bytes, out.string()));  // never write a file that does not load
    write_file_atomically(out, bytes);
    return ck.architecture + " (" + std::to_string(ck.tensors.size()) + " tensors)";
}

}  // namespace ssm::app
