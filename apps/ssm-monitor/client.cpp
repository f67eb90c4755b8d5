#include "client.hpp"

#include <utility>  // before Boost.Asio 1.74 (its awaitable.hpp uses std::exchange)
#include <algorithm>
#include <optional>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <thread>

#include "protocol.hpp"
#include "recording.hpp"
#include "ssmstream/error.hpp"
#include "wfdb.hpp"

namespace ssm::monitor {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

struct Source {
    Hello hello;
    std::vector<float> samples;  // frames × channels; empty for synthetic
    std::uint64_t frames = 0;
    std::vector<std::uint64_t> seqs;  // recording: the seq of each frame (gaps kept); empty otherwise
};

Source load_source(const SendOptions& o) {
    Source s;
    s.hello.stream_id = o.id;
    s.hello.token = o.token;
    if (o.source == "synthetic") {
        s.hello.sample_rate = o.rate;
        for (std::size_t c = 0; c < o.channels; ++c) {
            s.hello.names.push_back("ch" + std::to_string(c));
            s.hello.units.push_back("uV");
        }
        s.frames = static_cast<std::uint64_t>(o.seconds * o.rate);
        return s;
    }
    const std::filesystem::path p(o.source);
    if (std::filesystem::is_directory(p)) {
        Recording r = read_recording(p);
        s.hello.sample_rate = r.meta.sample_rate;
        s.hello.names = r.meta.names;
        s.hello.units = r.meta.units;
        s.samples = std::move(r.samples);
        s.frames = s.samples.size() / r.meta.channels();
        for (const auto& e : r.index)
            for (std::uint32_t i = 0; i < e.frames; ++i) s.seqs.push_back(e.seq + i);
    } else {
        const std::size_t maxf = 0;
        WfdbRecord r = read_wfdb(p, maxf);
        s.hello.sample_rate = r.sample_rate;
        s.hello.names = r.names;
        s.hello.units = r.units;
        const auto start = std::min<std::size_t>(r.frames, static_cast<std::size_t>(o.start_s * r.sample_rate));
        std::size_t n = r.frames - start;
        if (o.seconds > 0) n = std::min<std::size_t>(n, static_cast<std::size_t>(o.seconds * r.sample_rate));
        s.samples.assign(r.samples.begin() + static_cast<std::ptrdiff_t>(start * r.channels),
                         r.samples.begin() + static_cast<std::ptrdiff_t>((start + n) * r.channels));
        s.frames = n;
    }
    for (auto& n : s.hello.names) n = n.substr(0, kMaxNameBytes);
    for (auto& u : s.hello.units) u = u.substr(0, kMaxNameBytes);
    return s;
}

/** One connection, over raw TCP or WebSocket. */
class Conn {
public:
    Conn(net::io_context& ioc, bool ws) : sock_(ioc), ws_(ioc), use_ws_(ws) {}
    void connect(const std::string& host, unsigned short port) {
        tcp::resolver res(sock_.get_executor());
        const auto eps = res.resolve(host, std::to_string(port));
        if (use_ws_) {
            net::connect(beast::get_lowest_layer(ws_), eps);
            beast::get_lowest_layer(ws_).set_option(tcp::no_delay(true));
            ws_.handshake(host, "/ingest?token=" + token);
            ws_.binary(true);
        } else {
            net::connect(sock_, eps);
            sock_.set_option(tcp::no_delay(true));
        }
    }
    void write(const std::vector<std::byte>& b) {
        if (use_ws_) ws_.write(net::buffer(b));
        else net::write(sock_, net::buffer(b));
    }
    /** Reads one frame; false on EOF/error. */
    bool read(Header& h, std::vector<std::byte>& payload) {
        if (use_ws_) {
            beast::flat_buffer fb;
            beast::error_code ec;
            ws_.read(fb, ec);
            if (ec) return false;
            const auto d = fb.cdata();
            std::span<const std::byte> all(static_cast<const std::byte*>(d.data()), d.size());
            if (!parse_header(all, h) || all.size() != kHeaderBytes + h.payload_bytes) return false;
            payload.assign(all.begin() + kHeaderBytes, all.end());
            return true;
        }
        std::array<std::byte, kHeaderBytes> hb;
        beast::error_code ec;
        net::read(sock_, net::buffer(hb), ec);
        if (ec || !parse_header(hb, h)) return false;
        payload.resize(h.payload_bytes);
        net::read(sock_, net::buffer(payload), ec);
        return !ec;
    }
    void close_hard() {
        beast::error_code ec;
        auto& s = use_ws_ ? beast::get_lowest_layer(ws_) : sock_;
        s.set_option(net::socket_base::linger(true, 0), ec);
        s.close(ec);
    }
    void close() {
        beast::error_code ec;
        if (use_ws_) ws_.close(websocket::close_code::normal, ec);
        else {
            sock_.shutdown(tcp::socket::shutdown_send, ec);
            // wait for the server to close (it has then processed our bye)
            std::array<char, 256> junk;
            while (!ec) sock_.read_some(net::buffer(junk), ec);
            sock_.close(ec);
        }
    }
    std::string token;

private:
    tcp::socket sock_;
    websocket::stream<tcp::socket> ws_;
    bool use_ws_;
};

bool contains(const std::vector<std::uint64_t>& v, std::uint64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

float synthetic_sample(std::size_t c, std::uint64_t n, double rate) {
    const double t = static_cast<double>(n) / rate;
    const double f = 1.0 + 0.5 * static_cast<double>(c);
    return static_cast<float>(0.5 * std::sin(2 * M_PI * f * t) + 0.001 * static_cast<double>((n * 7919 + c * 104729) % 1000));
}

int run_send(const SendOptions& o) {
    Source src = load_source(o);
    const std::size_t ch = src.hello.channels();
    const double rate = src.hello.sample_rate;
    if (ch == 0 || ch > kMaxChannels) throw ssm::UsageError("send: channel count must be 1..256");
    const std::size_t block = o.block ? o.block : std::max<std::size_t>(1, static_cast<std::size_t>(rate / 20));
    if (block > kMaxFramesPerData) throw ssm::UsageError("send: --block at most 4096 frames");
    net::io_context ioc;
    std::uint64_t pos = 0;  // next frame index into the source
    int attempts = 0;
    std::vector<std::byte> out, payload;
    std::vector<float> frame(block * ch);
    const auto t0 = std::chrono::steady_clock::now();
    const std::int64_t unix_t0 = unix_now_ns();  // device time of frame 0 (paced sending: acquisition times)
    std::uint64_t data_frames_sent = 0;
    std::vector<std::uint64_t> dropped_done;
    auto seq_of = [&](std::uint64_t i) { return src.seqs.empty() ? i : src.seqs[i]; };
    while (true) {
        Conn conn(ioc, o.websocket);
        conn.token = o.token;
        try {
            conn.connect(o.host, o.port);
            out.clear();
            encode_hello(src.hello, out);
            conn.write(out);
            Header h;
            if (!conn.read(h, payload)) throw std::runtime_error("connection closed before welcome");
            if (h.type == Type::error) {
                std::string why;
                parse_error(payload, why);
                std::cerr << "ssm-monitor send: refused: " << why << "\n";
                return 1;
            }
            Welcome w;
            if (h.type != Type::welcome || !parse_welcome(payload, w)) throw std::runtime_error("no welcome");
            // Resume: skip the frames the server already has.
            while (pos < src.frames && seq_of(pos) < w.next_seq) ++pos;
            if (!o.quiet && w.next_seq) std::cerr << "ssm-monitor send: resuming at frame " << w.next_seq << "\n";
            attempts = 0;
            bool cut = false;
            while (pos < src.frames) {
                // a frame message never spans a recording gap
                std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(block, src.frames - pos));
                for (std::size_t i = 1; i < n; ++i)
                    if (seq_of(pos + i) != seq_of(pos) + i) { n = i; break; }
                const std::uint64_t seq = seq_of(pos);
                if (o.speed > 0) {
                    const auto due = t0 + std::chrono::duration<double>(static_cast<double>(pos + n) / rate / o.speed);
                    std::this_thread::sleep_until(due);
                }
                for (std::size_t i = 0; i < n; ++i)
                    for (std::size_t c = 0; c < ch; ++c) {
                        float v = src.samples.empty() ? synthetic_sample(c, seq + i, rate) : src.samples[(pos + i) * ch + c];
                        if (c == 0 && contains(o.nan_at, seq + i)) v = std::numeric_limits<float>::quiet_NaN();
                        frame[i * ch + c] = v;
                    }
                const std::uint64_t msg = data_frames_sent++;
                if (!contains(o.skip, msg)) {
                    out.clear();
                    // Device timestamp: when the last frame of this block was "acquired" (its due time when paced),
                    // so the server's latency includes any lateness of the sender; as fast as possible: now.
                    const std::int64_t ts = o.speed > 0 ? unix_t0 + static_cast<std::int64_t>(static_cast<double>(pos + n) / rate / o.speed * 1e9)
                                                        : unix_now_ns();
                    encode_data(seq, ts, {frame.data(), n * ch}, ch, out);
                    conn.write(out);
                }
                pos += n;
                if (contains(o.drop_at, msg) && !contains(dropped_done, msg)) {
                    dropped_done.push_back(msg);
                    if (!o.quiet) std::cerr << "ssm-monitor send: cutting the connection after data frame " << msg << "\n";
                    conn.close_hard();
                    cut = true;
                    break;
                }
            }
            if (cut) {
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
                pos = 0;  // the welcome of the next connection says where to resume
                continue;
            }
            out.clear();
            encode_bye(out);
            conn.write(out);
            conn.close();
            if (!o.quiet) std::cerr << "ssm-monitor send: sent " << pos << " frames of " << ch << " channels\n";
            return 0;
        } catch (const std::exception& e) {
            if (++attempts > o.retries) {
                std::cerr << "ssm-monitor send: giving up: " << e.what() << "\n";
                return 1;
            }
            if (!o.quiet) std::cerr << "ssm-monitor send: " << e.what() << "; reconnecting\n";
            std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 100 << std::min(attempts, 5))));
            // resume from the server's next_seq: rewind is handled by the welcome
            pos = 0;
        }
    }
}

std::size_t dump_csv(const std::string& source, const std::string& csv) {
    SendOptions o;
    o.source = source;
    o.seconds = 0;
    Source s = load_source(o);
    const std::size_t ch = s.hello.channels();
    std::ofstream f(csv);
    if (!f) throw ssm::UsageError("cannot write " + csv);
    f << "seq";
    for (const auto& n : s.hello.names) f << "," << n;
    f << "\n";
    char buf[32];
    for (std::uint64_t i = 0; i < s.frames; ++i) {
        f << (s.seqs.empty() ? i : s.seqs[i]);
        for (std::size_t c = 0; c < ch; ++c) {
            std::snprintf(buf, sizeof buf, ",%.9g", static_cast<double>(s.samples[i * ch + c]));
            f << buf;
        }
        f << "\n";
    }
    if (std::filesystem::is_directory(source)) {
        const Recording r = read_recording(source);
        for (const auto& e : r.index)
            if (e.flags & kGapBefore) std::cerr << "gap: " << e.gap_frames << " frames missing before frame " << e.seq << "\n";
        if (r.dropped_tail_entries) std::cerr << "torn tail: " << r.dropped_tail_entries << " index entries past the flushed samples ignored\n";
    }
    return s.frames;
}

}  // namespace ssm::monitor
