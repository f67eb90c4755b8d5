#include "client.hpp"

#include <utility>  // before Boost.Asio 1.74 (its awaitable.hpp uses std::exchange)
#include <algorithm>
#include <optional>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <thread>
#include <type_traits>

#include "protocol.hpp"
#include "recording.hpp"
#include "ssmstream/error.hpp"
#include "tls.hpp"
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

/** A TLS handshake that failed for a reason a retry will not fix (the certificate, or a server without TLS). */
struct TlsFailure : std::runtime_error {
    TlsFailure(const std::string& what, bool certificate) : std::runtime_error(what), certificate(certificate) {}
    bool certificate;  // the server's certificate was rejected (rather than the handshake itself)
};

using TlsSocket = net::ssl::stream<tcp::socket>;
template <class S>
constexpr bool kIsWs = false;
template <class S>
constexpr bool kIsWs<websocket::stream<S>> = true;

/** One connection: raw TCP or WebSocket, each in the clear or inside TLS. */
class Conn {
    // (first: the members below deduce their return types from it)
    /** Calls f on whichever stream this connection is. */
    template <class F>
    auto with(F&& f) {
        if (plain_) return f(*plain_);
        if (tls_) return f(*tls_);
        if (ws_) return f(*ws_);
        return f(*wss_);
    }
    template <class S>
    static TlsSocket* tls_layer(S& s) {
        if constexpr (std::is_same_v<S, TlsSocket>) return &s;
        else if constexpr (std::is_same_v<S, websocket::stream<TlsSocket>>) return &s.next_layer();
        else return nullptr;
    }

public:
    /** `tls` null: plaintext. `verify`: the handshake checks the certificate and that it names the host. */
    Conn(net::io_context& ioc, bool ws, net::ssl::context* tls, bool verify) : ioc_(ioc), verify_(verify) {
        if (tls && ws) wss_.emplace(ioc, *tls);
        else if (tls) tls_.emplace(ioc, *tls);
        else if (ws) ws_.emplace(ioc);
        else plain_.emplace(ioc);
    }
    void connect(const std::string& host, unsigned short port) {
        tcp::resolver res(ioc_);
        const auto eps = res.resolve(host, std::to_string(port));
        with([&](auto& s) {
            auto& sock = beast::get_lowest_layer(s);
            net::connect(sock, eps);
            sock.set_option(tcp::no_delay(true));
            if (TlsSocket* t = tls_layer(s)) handshake(*t, host);
            if constexpr (kIsWs<std::decay_t<decltype(s)>>) {
                beast::error_code ec;
                s.handshake(host, "/ingest?token=" + token, ec);
                const bool unanswered = ec == beast::http::error::end_of_stream || ec == net::error::connection_reset;
                if (unanswered && !tls_layer(s))  // a TLS-only server closes a plaintext upgrade request unanswered
                    throw std::runtime_error("WebSocket handshake: " + ec.message() + " (a TLS-only server? then --tls or --ca FILE)");
                if (ec) throw boost::system::system_error(ec);
                s.binary(true);
            }
        });
    }
    void write(const std::vector<std::byte>& b) {
        with([&](auto& s) {
            if constexpr (kIsWs<std::decay_t<decltype(s)>>) s.write(net::buffer(b));
            else net::write(s, net::buffer(b));
        });
    }
    /** Reads one frame; false on EOF/error. */
    bool read(Header& h, std::vector<std::byte>& payload) {
        return with([&](auto& s) {
            beast::error_code ec;
            if constexpr (kIsWs<std::decay_t<decltype(s)>>) {
                beast::flat_buffer fb;
                s.read(fb, ec);
                if (ec) return false;
                const auto d = fb.cdata();
                std::span<const std::byte> all(static_cast<const std::byte*>(d.data()), d.size());
                if (!parse_header(all, h) || all.size() != kHeaderBytes + h.payload_bytes) return false;
                payload.assign(all.begin() + kHeaderBytes, all.end());
                return true;
            } else {
                std::array<std::byte, kHeaderBytes> hb;
                net::read(s, net::buffer(hb), ec);
                if (ec || !parse_header(hb, h)) return false;
                payload.resize(h.payload_bytes);
                net::read(s, net::buffer(payload), ec);
                return !ec;
            }
        });
    }
    /** Cuts the connection (a reset, no TLS close_notify): what a device losing its link looks like. */
    void close_hard() {
        with([&](auto& s) {
            beast::error_code ec;
            auto& sock = beast::get_lowest_layer(s);
            sock.set_option(net::socket_base::linger(true, 0), ec);
            sock.close(ec);
        });
    }
    /** Clean end after the bye: waits for the server to close (it has then processed the bye). */
    void close() {
        with([&](auto& s) {
            using S = std::decay_t<decltype(s)>;
            beast::error_code ec;
            if constexpr (kIsWs<S>) {
                s.close(websocket::close_code::normal, ec);
            } else {
                // Plain TCP half-closes; TLS cannot (the server's TLS layer would read a cut), so it reads on until
                // the server's close_notify and answers it.
                if constexpr (std::is_same_v<S, tcp::socket>) s.shutdown(tcp::socket::shutdown_send, ec);
                std::array<char, 256> junk;
                while (!ec) s.read_some(net::buffer(junk), ec);
                if constexpr (std::is_same_v<S, TlsSocket>)
                    if (ec == net::error::eof) s.shutdown(ec);
                beast::get_lowest_layer(s).close(ec);
            }
        });
    }
    std::string token;

private:
    void handshake(TlsSocket& t, const std::string& host) {
        keep_record_buffers(t.native_handle());
        set_tls_peer(t.native_handle(), host, verify_);
        beast::error_code ec;
        t.handshake(net::ssl::stream_base::client, ec);
        if (!ec) return;
        const std::string why = tls_client_error(ec, t.native_handle(), verify_);
        if (!is_tls_error(ec)) throw std::runtime_error(why);  // a reset or EOF mid-handshake: worth a retry
        throw TlsFailure(why, verify_ && SSL_get_verify_result(t.native_handle()) != X509_V_OK);
    }

    net::io_context& ioc_;
    bool verify_;
    std::optional<tcp::socket> plain_;
    std::optional<TlsSocket> tls_;
    std::optional<websocket::stream<tcp::socket>> ws_;
    std::optional<websocket::stream<TlsSocket>> wss_;
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
    if (o.insecure && !o.ca.empty())
        throw ssm::UsageError("--ca and --insecure contradict each other: --ca verifies the server, --insecure does not");
    std::optional<net::ssl::context> tls;
    if (o.tls || o.insecure || !o.ca.empty()) tls.emplace(make_client_tls(o.ca, o.insecure));
    const bool verify = tls && !o.insecure;
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
        Conn conn(ioc, o.websocket, tls ? &*tls : nullptr, verify);
        conn.token = o.token;
        try {
            conn.connect(o.host, o.port);
            out.clear();
            encode_hello(src.hello, out);
            conn.write(out);
            Header h;
            if (!conn.read(h, payload))
                throw std::runtime_error(tls ? "connection closed before welcome"
                                             : "connection closed before welcome (a TLS-only server? then --tls or --ca FILE)");
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
        } catch (const TlsFailure& e) {  // the same server would fail the same way again: no retry
            std::cerr << "ssm-monitor send: TLS: " << e.what();
            if (e.certificate)
                std::cerr << " (checked for host " << o.host << " against "
                          << (o.ca.empty() ? "the system's trusted certificates; --ca FILE trusts a private CA or the server's own certificate"
                                           : "--ca " + o.ca)
                          << ")";
            std::cerr << "\n";
            return 1;
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
