#pragma once
// ssm-monitor wire protocol v1 (apps/ssm-monitor/PROTOCOL.md): pure parsing and encoding, no I/O.
//
// Every function here is bounds-checked against the span it is given and never reads past it; a malformed input
// gives an Error value with a one-line reason, never an exception or a crash (tests/fuzz/fuzz_monitor_frame.cpp).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ssm::monitor {

inline constexpr std::uint8_t kMagic0 = 'S', kMagic1 = 'M';
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderBytes = 8;

/** Limits every length is checked against. */
inline constexpr std::size_t kMaxPayload = 1u << 20;      // 1 MiB per frame
inline constexpr std::size_t kMaxChannels = 256;
inline constexpr std::size_t kMaxFramesPerData = 4096;
inline constexpr std::size_t kMaxIdBytes = 64;
inline constexpr std::size_t kMaxTokenBytes = 256;
inline constexpr std::size_t kMaxNameBytes = 32;
inline constexpr std::size_t kMaxTextBytes = 1024;
inline constexpr double kMaxSampleRate = 100000.0;

enum class Type : std::uint8_t {
    hello = 1,    // client → server: who I am
    data = 2,     // client → server: samples
    welcome = 3,  // server → client: accepted; where to resume
    error = 4,    // server → client: why the connection is being closed
    bye = 5,      // client → server: clean end of stream
};

struct Header {
    Type type{};
    std::uint32_t payload_bytes = 0;
};

struct Hello {
    std::string stream_id, token;
    double sample_rate = 0;
    std::vector<std::string> names, units;
    std::size_t channels() const noexcept { return names.size(); }
};

/** A data frame's fixed part; the samples stay in the caller's buffer (`samples` points into it). */
struct DataView {
    std::uint64_t seq = 0;            // index of the first frame in this message, counted from 0 for the stream
    std::int64_t device_time_ns = 0;  // the device's clock when the last frame was acquired (opaque to the server)
    std::uint32_t frames = 0;
    const std::byte* samples = nullptr;  // frames × channels little-endian float32, interleaved (may be unaligned)
};

struct Welcome {
    std::uint64_t next_seq = 0;  // the frame index the server expects next (0 for a new stream)
};

/** Result of a parse: ok, or a one-line reason. */
struct Status {
    bool ok = true;
    std::string error;
    static Status fail(std::string why) { return {false, std::move(why)}; }
    explicit operator bool() const noexcept { return ok; }
};

/** Parses the 8-byte header at the start of `bytes` (needs kHeaderBytes). Checks magic, version, type and
 * payload length ≤ kMaxPayload. */
Status parse_header(std::span<const std::byte> bytes, Header& out);
/** Parses a hello payload; checks every length, the id's characters, channel count, rate, and that nothing trails. */
Status parse_hello(std::span<const std::byte> payload, Hello& out);
/** Parses a data payload for a stream of `channels` channels: frames ≥ 1, ≤ kMaxFramesPerData, and the sample bytes
 * are exactly frames × channels × 4. No allocation. */
Status parse_data(std::span<const std::byte> payload, std::size_t channels, DataView& out);
Status parse_welcome(std::span<const std::byte> payload, Welcome& out);
/** Error payload: u16 length + UTF-8 text (≤ kMaxTextBytes). */
Status parse_error(std::span<const std::byte> payload, std::string& text);

/** Encoders (whole frame: header + payload), appended to `out`. */
void encode_hello(const Hello& h, std::vector<std::byte>& out);
void encode_data_header(std::uint64_t seq, std::int64_t device_time_ns, std::uint32_t frames, std::size_t channels,
                        std::vector<std::byte>& out);  // then append frames × channels float32
void encode_data(std::uint64_t seq, std::int64_t device_time_ns, std::span<const float> interleaved,
                 std::size_t channels, std::vector<std::byte>& out);
void encode_welcome(const Welcome& w, std::vector<std::byte>& out);
void encode_error(std::string_view text, std::vector<std::byte>& out);
void encode_bye(std::vector<std::byte>& out);

/** Reads float32 sample `i` of a DataView (little-endian, unaligned-safe). */
float sample_at(const DataView& d, std::size_t i) noexcept;

/** Splits a byte stream into frames without allocating beyond its fixed buffer: feed bytes, take frames.
 * Used by the fuzz target and the tests; the server reads header then payload directly. */
class FrameSplitter {
public:
    FrameSplitter() : buf_(kHeaderBytes + kMaxPayload) {}
    /** Consumes up to `in.size()` bytes; returns how many were consumed. After a frame completes, `ready()` is true
     * until `next()` is called. A bad header sets `failed()` with a reason and consumes nothing more. */
    std::size_t feed(std::span<const std::byte> in);
    bool ready() const noexcept { return ready_; }
    bool failed() const noexcept { return !status_.ok; }
    const Status& status() const noexcept { return status_; }
    const Header& header() const noexcept { return header_; }
    std::span<const std::byte> payload() const noexcept { return {buf_.data() + kHeaderBytes, header_.payload_bytes}; }
    void next() noexcept { ready_ = false; have_ = 0; }
    /** Back to the start of a byte stream (clears a failure). */
    void reset() noexcept { ready_ = false; have_ = 0; status_ = Status{}; }

private:
    std::vector<std::byte> buf_;
    std::size_t have_ = 0;
    bool ready_ = false;
    Header header_{};
    Status status_{};
};

}  // namespace ssm::monitor
