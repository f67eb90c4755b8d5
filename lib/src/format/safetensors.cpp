// Safetensors container: validation first, views after. Nothing in a file is trusted until parse() returns.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "ssmstream/error.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm {

static_assert(std::endian::native == std::endian::little, "ssmstream reads little-endian tensors in place");

namespace {

constexpr std::uint64_t max_header_bytes = 100ull << 20;

[[noreturn]] void fail(const std::string& label, const std::string& what) {
    throw FormatError(label + ": " + what);
}

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = (h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1f;
    std::uint32_t mant = h & 0x3ff;
    std::uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(bits);
}

std::uint16_t float_to_half(float f) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::int32_t exp = static_cast<std::int32_t>((x >> 23) & 0xff) - 127 + 15;
    std::uint32_t mant = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return static_cast<std::uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
    if (exp >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10) return static_cast<std::uint16_t>(sign);
        mant |= 0x800000u;
        const int shift = 14 - exp;
        std::uint32_t half = mant >> shift;
        const std::uint32_t rem = mant & ((1u << shift) - 1);
        const std::uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) ++half;
        return static_cast<std::uint16_t>(sign | half);
    }
    std::uint32_t half = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
    const std::uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;  // may carry into the exponent: correct rounding
    return static_cast<std::uint16_t>(half);
}

std::uint16_t float_to_bf16(float f) {
    std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40);  // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return static_cast<std::uint16_t>(x >> 16);
}

template <class T>
T load_le(const std::byte* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

template <class Out>
std::vector<Out> convert(const TensorView& t) {
    const std::size_t n = t.numel();
    std::vector<Out> out(n);
    const std::byte* p = t.bytes.data();
    switch (t.dtype) {
        case DType::F32:
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load_le<float>(p + 4 * i));
            break;
        case DType::F64:
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load_le<double>(p + 8 * i));
            break;
        case DType::F16:
            for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(half_to_float(load_le<std::uint16_t>(p + 2 * i)));
            break;
        case DType::BF16:
            for (std::size_t i = 0; i < n; ++i)
                out[i] = static_cast<Out>(
                    std::bit_cast<float>(static_cast<std::uint32_t>(load_le<std::uint16_t>(p + 2 * i)) << 16));
            break;
    }
    return out;
}

}  // namespace

DType dtype_from_string(std::string_view name) {
    if (name == "F32") return DType::F32;
    if (name == "F64") return DType::F64;
    if (name == "F16") return DType::F16;
    if (name == "BF16") return DType::BF16;
    throw FormatError("unsupported dtype '" + std::string(name) + "' (supported: F32, F64, F16, BF16)");
}

std::string_view to_string(DType dtype) noexcept {
    switch (dtype) {
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::F32: return "F32";
        case DType::F64: return "F64";
    }
    return "?";
}

std::size_t dtype_size(DType dtype) noexcept {
    switch (dtype) {
        case DType::F16:
        case DType::BF16: return 2;
        case DType::F32: return 4;
        case DType::F64: return 8;
    }
    return 0;
}

std::size_t TensorView::numel() const noexcept {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
}

struct TensorFile::Storage {
    void* map = nullptr;
    std::size_t map_size = 0;
    std::vector<std::byte> copy;
    std::vector<TensorFile> sources;  // compose(): the files whose bytes the views point into
    ~Storage() {
        if (map != nullptr) ::munmap(map, map_size);
    }
};

TensorFile::TensorFile(TensorFile&&) noexcept = default;
TensorFile& TensorFile::operator=(TensorFile&&) noexcept = default;
TensorFile::~TensorFile() = default;

TensorFile TensorFile::compose(std::string label, std::map<std::string, std::string> metadata, std::vector<TensorView> tensors,
                               std::vector<TensorFile> sources) {
    TensorFile f;
    f.label_ = std::move(label);
    f.storage_ = std::make_unique<Storage>();
    f.storage_->sources = std::move(sources);  // moving a TensorFile keeps its mapping (and so the views) valid
    f.metadata_ = std::move(metadata);
    std::set<std::string_view> seen;
    for (const auto& t : tensors) {
        if (!seen.insert(t.name).second) fail(f.label_, "tensor '" + t.name + "': duplicate name");
        if (t.numel() * dtype_size(t.dtype) != t.bytes.size()) fail(f.label_, "tensor '" + t.name + "': shape and byte length disagree");
    }
    f.tensors_ = std::move(tensors);
    return f;
}

TensorFile TensorFile::open(const std::filesystem::path& path) {
    TensorFile f;
    f.label_ = path.string();
    f.storage_ = std::make_unique<Storage>();
    // O_NONBLOCK: a FIFO given as a model must fail the regular-file check below, not block in open().
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) fail(f.label_, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(f.label_, "not a regular file");
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    if (size > 0) {
        void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            const int e = errno;
            ::close(fd);
            fail(f.label_, std::string("cannot map: ") + std::strerror(e));
        }
        f.storage_->map = m;
        f.storage_->map_size = size;
        f.data_ = {static_cast<const std::byte*>(m), size};
    }
    ::close(fd);
    f.parse();
    return f;
}

TensorFile TensorFile::from_bytes(std::span<const std::byte> data, std::string label) {
    TensorFile f;
    f.label_ = std::move(label);
    f.storage_ = std::make_unique<Storage>();
    f.storage_->copy.assign(data.begin(), data.end());
    f.data_ = f.storage_->copy;
    f.parse();
    return f;
}

const TensorView* TensorFile::find(std::string_view name) const noexcept {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

std::vector<float> TensorFile::to_float(const TensorView& t) { return convert<float>(t); }
std::vector<double> TensorFile::to_double(const TensorView& t) { return convert<double>(t); }

void TensorFile::parse() {
    using nlohmann::json;
    if (data_.size() < 8) fail(label_, "file too short for a safetensors header (" + std::to_string(data_.size()) + " bytes)");
    const auto n = load_le<std::uint64_t>(data_.data());
    if (n > max_header_bytes) fail(label_, "header length " + std::to_string(n) + " exceeds the 100 MiB limit");
    if (n > data_.size() - 8)
        fail(label_, "header length " + std::to_string(n) + " runs past the end of the file (" +
                         std::to_string(data_.size()) + " bytes): truncated or not a safetensors file");
    if (n < 2) fail(label_, "header too short");
    const auto* hb = reinterpret_cast<const char*>(data_.data() + 8);
    const std::string_view header_text(hb, n);

    // nlohmann keeps the last of duplicate keys silently; a lying header could hide a tensor (or a second
    // "ssmstream" config, or a second data_offsets) that way. Keys are checked in every object.
    std::vector<std::set<std::string>> open_keys;  // keys seen, per object being parsed
    std::vector<std::string> open_names;           // the key each open object is the value of
    std::string last_key, duplicate, duplicate_in;
    std::size_t duplicate_depth = 0;
    json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start) {
            open_keys.emplace_back();
            open_names.push_back(last_key);
        } else if (event == json::parse_event_t::object_end && !open_keys.empty()) {
            open_keys.pop_back();
            open_names.pop_back();
        } else if (event == json::parse_event_t::key && !open_keys.empty()) {
            last_key = parsed.get<std::string>();
            if (!open_keys.back().insert(last_key).second && duplicate.empty()) {
                duplicate = last_key;
                duplicate_in = open_names.back();
                duplicate_depth = open_keys.size();
            }
        }
        return true;
    };
    json header;
    try {
        header = json::parse(header_text, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const json::exception& e) {
        fail(label_, std::string("header is not valid JSON: ") + e.what());
    }
    if (duplicate_depth == 1) fail(label_, "tensor '" + duplicate + "': duplicate name in header");
    if (!duplicate.empty()) fail(label_, "duplicate key '" + duplicate + "' in '" + duplicate_in + "'");
    if (!header.is_object()) fail(label_, "header is not a JSON object");

    const std::span<const std::byte> body = data_.subspan(8 + n);
    struct Entry {
        std::uint64_t begin, end;
        std::size_t index;
    };
    std::vector<Entry> entries;
    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object()) fail(label_, "__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string()) fail(label_, "__metadata__ key '" + m.key() + "' is not a string");
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor '" + name + "': ";
        if (name.empty()) fail(label_, "tensor with an empty name");
        if (!v.is_object()) fail(label_, where + "entry is not an object");
        for (auto f = v.begin(); f != v.end(); ++f)
            if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
                fail(label_, where + "unknown field '" + f.key() + "'");
        if (!v.contains("dtype") || !v["dtype"].is_string()) fail(label_, where + "missing or non-string dtype");
        TensorView t;
        t.name = name;
        try {
            t.dtype = dtype_from_string(v["dtype"].get<std::string>());
        } catch (const FormatError& e) {
            fail(label_, where + e.what());
        }
        if (!v.contains("shape") || !v["shape"].is_array()) fail(label_, where + "missing shape");
        if (v["shape"].size() > 8) fail(label_, where + "more than 8 dimensions");
        std::uint64_t count = 1;
        for (const auto& d : v["shape"]) {
            if (!d.is_number_unsigned()) fail(label_, where + "shape entries must be non-negative integers");
            const auto dim = d.get<std::uint64_t>();
            // count ≤ 2^60 keeps count × dtype size (≤ 8) from wrapping around 2^64 (a huge shape passing as 0 bytes)
            if (dim > (std::uint64_t{1} << 40) || (dim != 0 && count > (std::uint64_t{1} << 60) / dim))
                fail(label_, where + "shape too large");
            count *= dim;
            t.shape.push_back(static_cast<std::int64_t>(dim));
        }
        const auto& off = v.contains("data_offsets") ? v["data_offsets"] : json();
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            fail(label_, where + "data_offsets must be two non-negative integers");
        const auto b = off[0].get<std::uint64_t>(), e = off[1].get<std::uint64_t>();
        if (b > e) fail(label_, where + "data_offsets begin " + std::to_string(b) + " > end " + std::to_string(e));
        if (e > body.size())
            fail(label_, where + "data_offsets end " + std::to_string(e) + " is past the data section (" +
                             std::to_string(body.size()) + " bytes): truncated file or lying header");
        const std::uint64_t want = count * dtype_size(t.dtype);
        if (want != e - b)
            fail(label_, where + "shape × dtype size = " + std::to_string(want) + " bytes but data_offsets span " +
                             std::to_string(e - b));
        t.bytes = body.subspan(b, e - b);
        entries.push_back({b, e, tensors_.size()});
        tensors_.push_back(std::move(t));
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t cursor = 0;
    for (const auto& en : entries) {
        const auto& nm = tensors_[en.index].name;
        if (en.begin < cursor) fail(label_, "tensor '" + nm + "': data overlaps the previous tensor");
        if (en.begin > cursor) fail(label_, "tensor '" + nm + "': gap of " + std::to_string(en.begin - cursor) + " bytes before its data");
        cursor = en.end;
    }
    if (cursor != body.size())
        fail(label_, std::to_string(body.size() - cursor) + " trailing bytes after the last tensor");
    std::vector<TensorView> ordered;
    ordered.reserve(tensors_.size());
    for (const auto& en : entries) ordered.push_back(std::move(tensors_[en.index]));
    tensors_ = std::move(ordered);
}

std::vector<std::byte> encode_safetensors(const std::map<std::string, std::string>& metadata,
                                          const std::vector<TensorData>& tensors) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    std::set<std::string> names;
    for (const auto& t : tensors) {
        if (!names.insert(t.name).second) throw UsageError("duplicate tensor name '" + t.name + "'");
        std::size_t count = 1;
        for (auto d : t.shape) count *= static_cast<std::size_t>(d);
        if (count != t.values.size())
            throw UsageError("tensor '" + t.name + "': shape holds " + std::to_string(count) + " values, given " +
                             std::to_string(t.values.size()));
        const std::uint64_t bytes = count * dtype_size(t.dtype);
        header[t.name] = {{"dtype", std::string(to_string(t.dtype))}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    while ((text.size() + 8) % 8 != 0) text.push_back(' ');
    std::vector<std::byte> out(8 + text.size() + offset);
    const std::uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, text.data(), text.size());
    std::byte* p = out.data() + 8 + text.size();
    for (const auto& t : tensors) {
        for (double v : t.values) {
            switch (t.dtype) {
                case DType::F32: { const float f = static_cast<float>(v); std::memcpy(p, &f, 4); p += 4; break; }
                case DType::F64: { std::memcpy(p, &v, 8); p += 8; break; }
                case DType::F16: { const auto h = float_to_half(static_cast<float>(v)); std::memcpy(p, &h, 2); p += 2; break; }
                case DType::BF16: { const auto h = float_to_bf16(static_cast<float>(v)); std::memcpy(p, &h, 2); p += 2; break; }
            }
        }
    }
    return out;
}

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
    auto tmp = path;
    tmp += ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
        if (!os) throw Error(path.string() + ": cannot write: " + std::strerror(errno));
        os.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        os.flush();
        if (!os) {
            std::error_code ec;
            std::filesystem::remove(tmp, ec);
            throw Error(path.string() + ": write failed (disk full?)");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        throw Error(path.string() + ": cannot rename temporary file into place: " + ec.message());
    }
}

void write_safetensors(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<TensorData>& tensors) {
    const auto bytes = encode_safetensors(metadata, tensors);
    write_file_atomically(path, bytes);
}

}  // namespace ssm
