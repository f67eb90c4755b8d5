#include "protocol.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>

namespace ssm::monitor {
namespace {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian; add byte swaps here");

/** A bounds-checked reader over a span: every get checks the remaining length first. */
class Reader {
public:
    explicit Reader(std::span<const std::byte> b) : b_(b) {}
    std::size_t left() const noexcept { return b_.size() - pos_; }
    template <class T>
    bool get(T& v) noexcept {
        if (left() < sizeof(T)) return false;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return true;
    }
    bool get_string(std::string& s, std::size_t max) {
        std::uint16_t n = 0;
        if (!get(n) || n > max || left() < n) return false;
        s.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return true;
    }
    const std::byte* here() const noexcept { return b_.data() + pos_; }

private:
    std::span<const std::byte> b_;
    std::size_t pos_ = 0;
};

template <class T>
void put(std::vector<std::byte>& out, T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
}
void put_string(std::vector<std::byte>& out, std::string_view s) {
    put<std::uint16_t>(out, static_cast<std::uint16_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out.insert(out.end(), p, p + s.size());
}
void put_header(std::vector<std::byte>& out, Type t, std::size_t payload) {
    out.push_back(std::byte{kMagic0});
    out.push_back(std::byte{kMagic1});
    out.push_back(std::byte{kVersion});
    out.push_back(static_cast<std::byte>(t));
    put<std::uint32_t>(out, static_cast<std::uint32_t>(payload));
}

bool printable_utf8ish(const std::string& s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;  // no control characters (bytes ≥ 0x80 allowed: UTF-8)
    return true;
}
bool valid_id(const std::string& s) {
    if (s.empty()) return false;
    for (unsigned char c : s)
        if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
    return s != "." && s != "..";
}

}  // namespace

Status parse_header(std::span<const std::byte> b, Header& out) {
    if (b.size() < kHeaderBytes) return Status::fail("truncated header");
    if (b[0] != std::byte{kMagic0} || b[1] != std::byte{kMagic1}) return Status::fail("bad magic (not an ssm-monitor frame)");
    if (b[2] != std::byte{kVersion})
        return Status::fail("unsupported protocol version " + std::to_string(static_cast<int>(b[2])) + " (this server speaks 1)");
    const auto t = static_cast<std::uint8_t>(b[3]);
    if (t < 1 || t > 5) return Status::fail("unknown frame type " + std::to_string(t));
    std::uint32_t n = 0;
    std::memcpy(&n, b.data() + 4, 4);
    if (n > kMaxPayload) return Status::fail("frame payload of " + std::to_string(n) + " bytes exceeds the limit of 1 MiB");
    out.type = static_cast<Type>(t);
    out.payload_bytes = n;
    return {};
}

Status parse_hello(std::span<const std::byte> payload, Hello& out) {
    Reader r(payload);
    std::uint16_t ch = 0;
    double rate = 0;
    if (!r.get(ch) || !r.get(rate)) return Status::fail("hello: truncated");
    if (ch == 0 || ch > kMaxChannels) return Status::fail("hello: channel count " + std::to_string(ch) + " not in 1..256");
    if (!std::isfinite(rate) || rate <= 0 || rate > kMaxSampleRate)
        return Status::fail("hello: sample rate not in (0, 100000] Hz");
    Hello h;
    h.sample_rate = rate;
    if (!r.get_string(h.stream_id, kMaxIdBytes)) return Status::fail("hello: stream id missing or longer than 64 bytes");
    if (!valid_id(h.stream_id)) return Status::fail("hello: stream id must be 1-64 characters of [A-Za-z0-9_.-]");
    if (!r.get_string(h.token, kMaxTokenBytes)) return Status::fail("hello: token missing or longer than 256 bytes");
    h.names.resize(ch);
    h.units.resize(ch);
    for (std::size_t c = 0; c < ch; ++c) {
        if (!r.get_string(h.names[c], kMaxNameBytes) || !r.get_string(h.units[c], kMaxNameBytes))
            return Status::fail("hello: channel " + std::to_string(c) + " name/unit missing or longer than 32 bytes");
        if (!printable_utf8ish(h.names[c]) || !printable_utf8ish(h.units[c]))
            return Status::fail("hello: channel " + std::to_string(c) + " name/unit has control characters");
    }
    if (r.left() != 0) return Status::fail("hello: " + std::to_string(r.left()) + " trailing bytes");
    out = std::move(h);
    return {};
}

Status parse_data(std::span<const std::byte> payload, std::size_t channels, DataView& out) {
    Reader r(payload);
    DataView d;
    if (!r.get(d.seq) || !r.get(d.device_time_ns) || !r.get(d.frames)) return Status::fail("data: truncated");
    if (d.frames == 0 || d.frames > kMaxFramesPerData) return Status::fail("data: frame count not in 1..4096");
    if (channels == 0 || channels > kMaxChannels) return Status::fail("data: no hello yet");
    const std::size_t want = std::size_t{d.frames} * channels * 4;
    if (r.left() != want)
        return Status::fail("data: " + std::to_string(r.left()) + " sample bytes, expected " + std::to_string(want) +
                            " (" + std::to_string(d.frames) + " frames x " + std::to_string(channels) +
                            " channels x 4): wrong channel count?");
    if (d.seq > (std::uint64_t{1} << 62)) return Status::fail("data: sequence number out of range");
    d.samples = r.here();
    out = d;
    return {};
}

Status parse_welcome(std::span<const std::byte> payload, Welcome& out) {
    Reader r(payload);
    if (!r.get(out.next_seq) || r.left() != 0) return Status::fail("welcome: bad length");
    return {};
}

Status parse_error(std::span<const std::byte> payload, std::string& text) {
    Reader r(payload);
    if (!r.get_string(text, kMaxTextBytes) || r.left() != 0) return Status::fail("error frame: bad length");
    return {};
}

void encode_hello(const Hello& h, std::vector<std::byte>& out) {
    std::vector<std::byte> p;
    put<std::uint16_t>(p, static_cast<std::uint16_t>(h.names.size()));
    put<double>(p, h.sample_rate);
    put_string(p, h.stream_id);
    put_string(p, h.token);
    for (std::size_t c = 0; c < h.names.size(); ++c) {
        put_string(p, h.names[c]);
        put_string(p, c < h.units.size() ? std::string_view(h.units[c]) : std::string_view());
    }
    put_header(out, Type::hello, p.size());
    out.insert(out.end(), p.begin(), p.end());
}

void encode_data_header(std::uint64_t seq, std::int64_t t, std::uint32_t frames, std::size_t channels,
                        std::vector<std::byte>& out) {
    put_header(out, Type::data, 20 + std::size_t{frames} * channels * 4);
    put<std::uint64_t>(out, seq);
    put<std::int64_t>(out, t);
    put<std::uint32_t>(out, frames);
}

void encode_data(std::uint64_t seq, std::int64_t t, std::span<const float> x, std::size_t channels,
                 std::vector<std::byte>& out) {
    const auto frames = static_cast<std::uint32_t>(x.size() / channels);
    encode_data_header(seq, t, frames, channels, out);
    const auto* p = reinterpret_cast<const std::byte*>(x.data());
    out.insert(out.end(), p, p + std::size_t{frames} * channels * 4);
}

void encode_welcome(const Welcome& w, std::vector<std::byte>& out) {
    put_header(out, Type::welcome, 8);
    put<std::uint64_t>(out, w.next_seq);
}

void encode_error(std::string_view text, std::vector<std::byte>& out) {
    if (text.size() > kMaxTextBytes) text = text.substr(0, kMaxTextBytes);
    put_header(out, Type::error, 2 + text.size());
    put_string(out, text);
}

void encode_bye(std::vector<std::byte>& out) { put_header(out, Type::bye, 0); }

float sample_at(const DataView& d, std::size_t i) noexcept {
    float v;
    std::memcpy(&v, d.samples + 4 * i, 4);
    return v;
}

std::size_t FrameSplitter::feed(std::span<const std::byte> in) {
    if (ready_ || failed()) return 0;
    std::size_t used = 0;
    if (have_ < kHeaderBytes) {
        const std::size_t n = std::min(kHeaderBytes - have_, in.size());
        std::memcpy(buf_.data() + have_, in.data(), n);
        have_ += n;
        used += n;
        if (have_ < kHeaderBytes) return used;
        status_ = parse_header({buf_.data(), kHeaderBytes}, header_);
        if (!status_.ok) return used;
    }
    const std::size_t total = kHeaderBytes + header_.payload_bytes;
    const std::size_t n = std::min(total - have_, in.size() - used);
    std::memcpy(buf_.data() + have_, in.data() + used, n);
    have_ += n;
    used += n;
    if (have_ == total) ready_ = true;
    return used;
}

}  // namespace ssm::monitor
