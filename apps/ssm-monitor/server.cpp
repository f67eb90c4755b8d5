// ssm-monitor serve. Threads: one network thread runs every socket (Boost.Asio io_context); a pool of worker
// threads runs the processing, one strand per stream, so a stream's frames are processed in order and never on
// the network thread. Between them, each stream has a fixed-size single-producer/single-consumer byte ring
// (allocated at hello): the network thread copies a validated data frame in and posts a drain to the stream's
// strand; when the ring is full the connection stops reading (TCP back-pressure throttles the device) and retries
// every 2 ms. Viewers get one JSON snapshot every 100 ms; a viewer that cannot keep up has messages dropped
// (at most 4 queued) and is closed after 10 s of dropping. Memory is bounded by max_streams × ring size and
// max_viewers × 4 messages.
//
// TLS (--cert/--key): the listening socket speaks TLS only. Every session class is a template over its byte stream
// (beast::tcp_stream, or beast::ssl_stream over one); the handshake happens before the first bytes are looked at, so
// the binary protocol, HTTP and WebSocket all run inside TLS unchanged. A connection that fails its handshake (a
// plaintext client, a silent one past the hello timeout) is logged once and closed; handshakes in progress are
// capped, so a flood of them cannot grow memory without bound.
#include "server.hpp"

#include <utility>  // before Boost.Asio 1.74 (its awaitable.hpp uses std::exchange)
#include <algorithm>
#include <optional>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <fnmatch.h>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <type_traits>

#include "chain.hpp"
#include "protocol.hpp"
#include "qrs.hpp"
#include "recording.hpp"
#include "ssmstream/ssmstream.hpp"
#include "tls.hpp"
#include "web_page.hpp"

namespace ssm::monitor {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

// The two transports every session class is instantiated for.
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
template <class S>
constexpr bool kIsTls = std::is_same_v<S, TlsStream>;

/** Closes at once (no TLS close_notify): for errors, timeouts and take-overs, where a read may still be pending. */
template <class S>
void close_now(S& s) {
    beast::error_code ec;
    auto& t = beast::get_lowest_layer(s);
    t.socket().shutdown(tcp::socket::shutdown_both, ec);
    t.close();
}

/** Closes after the last write, with nothing else pending. Over TLS a close_notify goes first, so the peer can tell a
 * clean end from a cut; the peer's answer is awaited at most 2 s. `keep` holds the owner of `s` alive until then. */
template <class S, class Keep>
void close_gracefully(S& s, Keep keep) {
    if constexpr (kIsTls<S>) {
        beast::get_lowest_layer(s).expires_after(std::chrono::seconds(2));
        s.async_shutdown([&s, keep = std::move(keep)](beast::error_code) { close_now(s); });
    } else {
        close_now(s);
    }
}

constexpr std::size_t kMaxHelloPayload = 20000;
constexpr std::size_t kDisplayCap = 2048;  // display points kept per stream between broadcasts
constexpr double kDisplayRate = 125;       // display points per second per channel (peak-preserving decimation)
constexpr std::size_t kViewerQueue = 4;

std::size_t max_data_payload(std::size_t ch) { return std::min(kMaxPayload, 20 + kMaxFramesPerData * ch * 4); }

bool token_equal(std::string_view a, std::string_view b) {
    unsigned char d = a.size() == b.size() ? 0 : 1;
    for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i)
        d |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ (i < b.size() ? b[i] : 0));
    return d == 0;
}

/** Single-producer (network thread) / single-consumer (the stream's strand) ring of variable-size records. */
class ByteRing {
public:
    void init(std::size_t cap) {
        cap_ = (cap + 7) & ~std::size_t{7};
        buf_.assign(cap_, std::byte{0});
    }
    std::size_t capacity() const noexcept { return cap_; }
    /** Room for a body of n bytes, or nullptr when full. Call commit() to publish. */
    std::byte* reserve(std::size_t n) noexcept {
        const std::size_t need = (8 + n + 7) & ~std::size_t{7};
        const std::uint64_t w = w_.load(), r = r_.load();
        const std::size_t pos = w % cap_;
        std::size_t skip = 0;
        if (pos + need > cap_) skip = cap_ - pos;
        if (need + skip > cap_ - (w - r)) return nullptr;
        if (skip) {
            const std::uint32_t wrap = 0xFFFFFFFFu;
            std::memcpy(buf_.data() + pos, &wrap, 4);
        }
        pending_ = w + skip;
        pending_need_ = need;
        const auto sz = static_cast<std::uint32_t>(n);
        std::memcpy(buf_.data() + pending_ % cap_, &sz, 4);
        return buf_.data() + pending_ % cap_ + 8;
    }
    void commit() noexcept { w_.store(pending_ + pending_need_); }
    /** The oldest record's body, or an empty span. */
    std::span<std::byte> front() noexcept {
        for (;;) {
            const std::uint64_t r = r_.load(), w = w_.load();
            if (r == w) return {};
            const std::size_t pos = r % cap_;
            std::uint32_t sz;
            std::memcpy(&sz, buf_.data() + pos, 4);
            if (sz == 0xFFFFFFFFu) {
                r_.store(r + (cap_ - pos));
                continue;
            }
            front_need_ = (8 + sz + 7) & ~std::size_t{7};
            return {buf_.data() + pos + 8, sz};
        }
    }
    void pop() noexcept { r_.store(r_.load() + front_need_); }
    bool empty() const noexcept { return r_.load() == w_.load(); }

private:
    std::vector<std::byte> buf_;
    std::size_t cap_ = 0;
    std::atomic<std::uint64_t> w_{0}, r_{0};
    std::uint64_t pending_ = 0;
    std::size_t pending_need_ = 0, front_need_ = 0;
};

struct RecHdr {
    std::uint32_t flags = 0, pad = 0;
    std::uint64_t gap_frames = 0;
    std::int64_t recv_ns = 0;
};

/** End-to-end latency histogram: 0.25 ms buckets to 10 s, then overflow. Lock-free. */
class LatencyHist {
public:
    static constexpr std::size_t kBuckets = 40001;
    void add(std::int64_t ns) noexcept {
        const std::int64_t b = std::clamp<std::int64_t>(ns / 250'000, 0, kBuckets - 1);
        h_[static_cast<std::size_t>(b)].fetch_add(1, std::memory_order_relaxed);
        n_.fetch_add(1, std::memory_order_relaxed);
    }
    double quantile_ms(double q) const noexcept {
        const std::uint64_t n = n_.load();
        if (n == 0) return -1;
        const auto target = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(n)));
        std::uint64_t acc = 0;
        for (std::size_t i = 0; i < kBuckets; ++i) {
            acc += h_[i].load(std::memory_order_relaxed);
            if (acc >= target) return (static_cast<double>(i) + 1) * 0.25;
        }
        return static_cast<double>(kBuckets) * 0.25;
    }
    std::uint64_t count() const noexcept { return n_.load(); }

private:
    std::array<std::atomic<std::uint64_t>, kBuckets> h_{};
    std::atomic<std::uint64_t> n_{0};
};

class Server;

/** One device stream (identified by its stream id); lives across reconnections. */
class StreamState : public std::enable_shared_from_this<StreamState> {
public:
    StreamState(Server& srv, const Hello& h, net::strand<net::thread_pool::executor_type> strand)
        : srv_(srv), hello(h), ch(h.channels()), rate(h.sample_rate), strand_(std::move(strand)), qrs_(h.sample_rate) {}

    /** Allocates everything the real-time path needs (called on the network thread at the first hello). */
    void prepare(const std::vector<std::shared_ptr<const Model>>& models, NonFinitePolicy policy,
                 const std::filesystem::path& record_dir, std::uint64_t& next_seq);
    /** Network thread: a validated data payload; false when the ring is full (retry later). */
    bool push(std::span<const std::byte> payload, std::uint64_t trim_frames, const RecHdr& h);
    /** Posts a flush (and optionally close) of the recording to the strand. */
    void post_flush(bool close);
    /** Network thread: moves the display points gathered since the last call into `os` as JSON. */
    void snapshot_json(std::ostringstream& os, std::int64_t now_ns);

    Server& srv_;
    const Hello hello;
    const std::size_t ch;
    const double rate;
    // network-thread state
    std::uint64_t expected_seq = 0;
    bool connected = false;
    std::int64_t disconnected_at_ns = 0;
    std::uint64_t conn_serial = 0;
    std::function<void()> kick_owner;  // closes the connection that owns the stream (takeover on reconnect)
    std::uint64_t rx_frames = 0, dup_frames = 0, gap_events = 0, gap_frames = 0, reconnects = 0, throttled = 0;
    double rx_rate = 0;
    std::uint64_t rate_mark_frames = 0;
    std::int64_t rate_mark_ns = 0;
    int ecg_channel = -1;

private:
    void drain();
    void process(std::span<std::byte> rec);
    void flush_now(bool close);

    net::strand<net::thread_pool::executor_type> strand_;
    ByteRing ring_;
    std::atomic<bool> scheduled_{false};
    // worker state (touched only on the strand)
    std::vector<std::vector<Stream>> chains_;  // [channel][element]
    std::vector<float> a_, b_, clean_;          // scratch: per-channel in/out, clean interleaved
    Recorder rec_;
    QrsDetector qrs_;
    std::vector<QualityIndex> sqi_;
    std::size_t dec_ = 1, dec_n_ = 0;
    std::vector<float> bmin_r_, bmax_r_, bmin_c_, bmax_c_, last_r_, last_c_;
    std::uint64_t bucket_seq_ = 0;
    bool pending_gap_ = false;
    // shared with the network thread (display_mu_)
    std::mutex display_mu_;
    std::vector<std::uint64_t> d_seq_;
    std::vector<float> d_raw_, d_clean_;  // kDisplayCap × ch
    std::size_t d_count_ = 0;
    std::vector<std::uint64_t> d_gaps_, d_beats_;
    std::vector<double> d_sqi_;
    double d_hr_ = 0, d_lag_ms_ = 0;
    std::uint64_t d_processed_ = 0, d_nonfinite_ = 0, d_display_dropped_ = 0;
};

/** A connected browser (one implementation per transport): gets every snapshot, or has it dropped when behind. */
class Viewer {
public:
    virtual ~Viewer() = default;
    virtual void send(const std::shared_ptr<const std::string>& msg, std::int64_t now_ns) = 0;
};

class Server {
public:
    Server(const ServeOptions& o, Chain chain, std::vector<std::pair<std::string, Chain>> chain_for,
           std::optional<net::ssl::context> tls_context)
        : pool_(o.workers ? o.workers : std::max(1u, std::thread::hardware_concurrency())), opt(o),
          tls(std::move(tls_context)), chain_(std::move(chain)), chain_for_(std::move(chain_for)), acceptor_(ioc), tick_(ioc),
          signals_(ioc, SIGINT, SIGTERM) {
        policy = o.nonfinite == "reset" ? NonFinitePolicy::reset_state : NonFinitePolicy::zero_sample;
        // Each handshake in progress holds an SSL object and the stream's buffers (tens of KiB): enough for every
        // allowed stream and viewer to connect at once, and no more.
        max_tls_handshakes = std::max<std::size_t>(256, o.max_streams + o.max_viewers);
    }
    int run();

private:
    // First member, so destroyed last: every strand (in StreamState, held by sessions and by `streams`) refers to it.
    net::thread_pool pool_;

public:
    const ServeOptions& opt;
    net::io_context ioc{1};
    NonFinitePolicy policy;
    LatencyHist latency;
    std::map<std::string, std::shared_ptr<StreamState>> streams;  // network thread only
    std::optional<net::ssl::context> tls;                         // set: every connection speaks TLS
    std::set<std::shared_ptr<Viewer>> viewers;                    // network thread only
    std::deque<std::shared_ptr<const std::string>> history;       // the last snapshots, for a viewer that joins
    std::size_t history_bytes = 0;
    /** The recent snapshots as one JSON array (what a new viewer gets first, so its traces start filled). */
    std::shared_ptr<const std::string> backlog() const {
        auto out = std::make_shared<std::string>("[");
        for (std::size_t i = 0; i < history.size(); ++i) {
            if (i) *out += ',';
            *out += *history[i];
        }
        *out += ']';
        return out;
    }
    std::uint64_t conn_serial = 0, rejected = 0, viewer_drops = 0, viewers_closed_slow = 0;
    std::uint64_t tls_failures = 0, tls_refused_busy = 0;  // network thread only
    std::size_t tls_handshakes = 0, max_tls_handshakes = 0;
    std::atomic<std::uint64_t> nonfinite_total{0};

    /** Hello handling shared by TCP and WebSocket ingest; returns the stream or throws UsageError (sent to client). */
    std::shared_ptr<StreamState> attach(const Hello& h, std::uint64_t serial, std::function<void()> kick,
                                        std::uint64_t& next_seq);
    void detach(const std::shared_ptr<StreamState>& s, std::uint64_t serial);
    std::string stats_json();
    void log(const std::string& s) {
        if (!opt.quiet) std::cerr << "ssm-monitor: " << s << "\n";
    }

private:
    void accept();
    void on_tick();

    Chain chain_;
    std::vector<std::pair<std::string, Chain>> chain_for_;  // (stream-id glob, chain): first match wins over chain_
    tcp::acceptor acceptor_;
    net::steady_timer tick_;
    net::signal_set signals_;
    std::int64_t last_flush_tick_ = 0;
};

// ---------------------------------------------------------------------------------------------------------------
// StreamState

void StreamState::prepare(const std::vector<std::shared_ptr<const Model>>& models, NonFinitePolicy policy,
                          const std::filesystem::path& record_dir, std::uint64_t& next_seq) {
    const std::size_t maxf = kMaxFramesPerData;
    chains_.resize(ch);
    for (auto& c : chains_) {
        c.clear();
        for (const auto& m : models) {
            c.emplace_back(m, policy);
            // Stream::process splits longer blocks itself; a smaller max_block keeps a model's per-channel scratch
            // small (4096 frames × a wide model's activations would be megabytes per channel).
            c.back().prepare({.sample_rate = rate, .max_block = 256, .channels = 1});
        }
    }
    a_.assign(maxf, 0);
    b_.assign(maxf, 0);
    clean_.assign(maxf * ch, 0);
    sqi_.assign(ch, QualityIndex(rate));
    dec_ = std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(rate / kDisplayRate)));
    for (auto* v : {&bmin_r_, &bmax_r_, &bmin_c_, &bmax_c_, &last_r_, &last_c_}) v->assign(ch, 0);
    d_seq_.assign(kDisplayCap, 0);
    d_raw_.assign(kDisplayCap * ch, 0);
    d_clean_.assign(kDisplayCap * ch, 0);
    d_gaps_.reserve(64);
    d_beats_.reserve(64);
    d_sqi_.assign(ch, -1);
    // Ring: 2 s of data or two of the largest frames, whichever is more, capped at 8 MiB.
    const std::size_t two_s = static_cast<std::size_t>(2 * rate) * ch * 4 + 64 * 64;
    ring_.init(std::min<std::size_t>(std::max(two_s, 2 * (max_data_payload(ch) + 64)), 8u << 20));
    for (std::size_t c = 0; c < ch; ++c) {
        std::string n = hello.names[c];
        for (auto& x : n) x = static_cast<char>(std::toupper(static_cast<unsigned char>(x)));
        if (ecg_channel < 0 && (n.find("ECG") != std::string::npos || n == "MLII" || n == "II" || n == "I" ||
                                n.find("LEAD") != std::string::npos || (n.size() == 2 && n[0] == 'V' && n[1] >= '1' && n[1] <= '6')))
            ecg_channel = static_cast<int>(c);
    }
    next_seq = 0;
    if (!record_dir.empty()) next_seq = rec_.open(record_dir, hello);
}

bool StreamState::push(std::span<const std::byte> payload, std::uint64_t trim, const RecHdr& h) {
    // trim: leading frames already received (overlap after a resume) are cut off here.
    const std::size_t skip = trim * ch * 4;
    const std::size_t n = payload.size() - skip;
    std::byte* p = ring_.reserve(sizeof(RecHdr) + n);
    if (!p) return false;
    std::memcpy(p, &h, sizeof h);
    std::memcpy(p + sizeof h, payload.data(), 20);
    if (trim) {
        std::uint64_t seq;
        std::uint32_t frames;
        std::memcpy(&seq, payload.data(), 8);
        std::memcpy(&frames, payload.data() + 16, 4);
        seq += trim;
        frames -= static_cast<std::uint32_t>(trim);
        std::memcpy(p + sizeof h, &seq, 8);
        std::memcpy(p + sizeof h + 16, &frames, 4);
    }
    std::memcpy(p + sizeof h + 20, payload.data() + 20 + skip, n - 20);
    ring_.commit();
    if (!scheduled_.exchange(true)) net::post(strand_, [self = shared_from_this()] { self->drain(); });
    return true;
}

void StreamState::drain() {
    scheduled_.store(false);
    for (auto rec = ring_.front(); !rec.empty(); rec = ring_.front()) {
        process(rec);
        ring_.pop();
    }
    rec_.flush_if_due(unix_now_ns());
}

void StreamState::process(std::span<std::byte> rec) {
    RecHdr h;
    std::memcpy(&h, rec.data(), sizeof h);
    DataView d;
    if (!parse_data(rec.subspan(sizeof h), ch, d)) return;  // validated before; cannot happen
    const std::size_t n = d.frames;
    if (rec_.is_open()) {
        IndexEntry e;
        e.seq = d.seq;
        e.frames = d.frames;
        e.flags = h.flags;
        e.device_time_ns = d.device_time_ns;
        e.recv_time_ns = h.recv_ns;
        e.gap_frames = h.gap_frames;
        rec_.append(e, d.samples, n * ch * 4);
    }
    if (h.flags & kGapBefore) {
        qrs_.gap();
        pending_gap_ = true;
    }
    std::uint64_t nonfinite = 0;
    for (std::size_t c = 0; c < ch; ++c) {
        for (std::size_t i = 0; i < n; ++i) {
            const float v = sample_at(d, i * ch + c);
            nonfinite += !std::isfinite(v);
            a_[i] = v;
        }
        float* cur = a_.data();
        float* nxt = b_.data();
        for (auto& s : chains_[c]) {
            s.process(cur, nxt, n);
            std::swap(cur, nxt);
        }
        if (chains_[c].empty())  // no chain: clean = raw with the non-finite policy applied
            for (std::size_t i = 0; i < n; ++i)
                if (!std::isfinite(cur[i])) cur[i] = 0;
        for (std::size_t i = 0; i < n; ++i) clean_[i * ch + c] = cur[i];
    }
    // Display decimation (peak-preserving: of each bucket's min and max, the one farther from the last point),
    // heart rate and signal quality, frame by frame.
    std::lock_guard lk(display_mu_);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t fseq = d.seq + i;
        for (std::size_t c = 0; c < ch; ++c) {
            float r = sample_at(d, i * ch + c);
            if (!std::isfinite(r)) r = 0;
            const float cl = clean_[i * ch + c];
            if (dec_n_ == 0) {
                bmin_r_[c] = bmax_r_[c] = r;
                bmin_c_[c] = bmax_c_[c] = cl;
            } else {
                bmin_r_[c] = std::min(bmin_r_[c], r);
                bmax_r_[c] = std::max(bmax_r_[c], r);
                bmin_c_[c] = std::min(bmin_c_[c], cl);
                bmax_c_[c] = std::max(bmax_c_[c], cl);
            }
            sqi_[c].push(sample_at(d, i * ch + c), cl);
            if (static_cast<int>(c) == ecg_channel && qrs_.push(cl, fseq) && d_beats_.size() < 64)
                d_beats_.push_back(qrs_.last_beat());
        }
        if (dec_n_ == 0) bucket_seq_ = fseq;
        if (++dec_n_ == dec_) {
            dec_n_ = 0;
            if (d_count_ < kDisplayCap) {
                const std::size_t k = d_count_++;
                d_seq_[k] = bucket_seq_;
                for (std::size_t c = 0; c < ch; ++c) {
                    auto pick = [](float lo, float hi, float last) { return std::abs(hi - last) >= std::abs(lo - last) ? hi : lo; };
                    last_r_[c] = d_raw_[k * ch + c] = pick(bmin_r_[c], bmax_r_[c], last_r_[c]);
                    last_c_[c] = d_clean_[k * ch + c] = pick(bmin_c_[c], bmax_c_[c], last_c_[c]);
                }
            } else {
                ++d_display_dropped_;  // no viewer tick drained the buffer (cannot happen with the 100 ms tick)
            }
        }
    }
    if (pending_gap_ && d_gaps_.size() < 64) {
        d_gaps_.push_back(d.seq);
        pending_gap_ = false;
    }
    for (std::size_t c = 0; c < ch; ++c) d_sqi_[c] = sqi_[c].value();
    d_hr_ = ecg_channel >= 0 ? qrs_.heart_rate(d.seq + n) : 0;
    d_processed_ += n;
    d_nonfinite_ += nonfinite;
    const std::int64_t now = unix_now_ns();
    const std::int64_t lag = now - d.device_time_ns;
    d_lag_ms_ = static_cast<double>(lag) * 1e-6;
    if (lag >= 0 && lag < 3'600'000'000'000) srv_.latency.add(lag);
    if (nonfinite) srv_.nonfinite_total.fetch_add(nonfinite);
}

void StreamState::post_flush(bool close) {
    net::post(strand_, [self = shared_from_this(), close] { self->flush_now(close); });
}

void StreamState::flush_now(bool close) {
    for (auto rec = ring_.front(); !rec.empty(); rec = ring_.front()) {  // anything still queued first
        process(rec);
        ring_.pop();
    }
    rec_.flush_if_due(unix_now_ns(), close);
    if (close) rec_.close();
}

void json_str(std::ostringstream& os, std::string_view s) {
    os << '"';
    for (char c : s) {
        if (c == '"' || c == '\\') os << '\\' << c;
        else if (static_cast<unsigned char>(c) < 0x20) os << ' ';
        else os << c;
    }
    os << '"';
}

double fin(double x) { return std::isfinite(x) ? x : 0.0; }  // JSON has no NaN/Inf

void StreamState::snapshot_json(std::ostringstream& os, std::int64_t now_ns) {
    std::lock_guard lk(display_mu_);
    if (now_ns - rate_mark_ns >= 1'000'000'000) {
        rx_rate = rate_mark_ns ? static_cast<double>(rx_frames - rate_mark_frames) * 1e9 / static_cast<double>(now_ns - rate_mark_ns) : 0;
        rate_mark_ns = now_ns;
        rate_mark_frames = rx_frames;
    }
    os << "{\"id\":";
    json_str(os, hello.stream_id);
    os << ",\"rate\":" << rate << ",\"connected\":" << (connected ? "true" : "false") << ",\"rx_fps\":" << rx_rate
       << ",\"lag_ms\":" << fin(d_lag_ms_) << ",\"processed\":" << d_processed_ << ",\"received\":" << rx_frames
       << ",\"gaps\":" << gap_events << ",\"gap_frames\":" << gap_frames << ",\"dup_frames\":" << dup_frames
       << ",\"nonfinite\":" << d_nonfinite_ << ",\"reconnects\":" << reconnects << ",\"hr\":" << fin(d_hr_)
       << ",\"ecg\":" << ecg_channel << ",\"dec\":" << dec_ << ",\"names\":[";
    for (std::size_t c = 0; c < ch; ++c) {
        if (c) os << ',';
        json_str(os, hello.names[c]);
    }
    os << "],\"units\":[";
    for (std::size_t c = 0; c < ch; ++c) {
        if (c) os << ',';
        json_str(os, hello.units[c]);
    }
    os << "],\"sqi\":[";
    for (std::size_t c = 0; c < ch; ++c) os << (c ? "," : "") << (std::isfinite(d_sqi_[c]) ? d_sqi_[c] : 0.0);
    os << "],\"gap_at\":[";
    for (std::size_t i = 0; i < d_gaps_.size(); ++i) os << (i ? "," : "") << d_gaps_[i];
    os << "],\"beats\":[";
    for (std::size_t i = 0; i < d_beats_.size(); ++i) os << (i ? "," : "") << d_beats_[i];
    os << "],\"seq\":[";
    for (std::size_t k = 0; k < d_count_; ++k) os << (k ? "," : "") << d_seq_[k];
    os << "],\"raw\":[";
    char num[32];
    for (int pass = 0; pass < 2; ++pass) {
        if (pass == 1) os << "],\"clean\":[";
        const auto& src = pass == 0 ? d_raw_ : d_clean_;
        for (std::size_t c = 0; c < ch; ++c) {
            os << (c ? ",[" : "[");
            for (std::size_t k = 0; k < d_count_; ++k) {
                std::snprintf(num, sizeof num, "%s%.6g", k ? "," : "", fin(static_cast<double>(src[k * ch + c])));
                os << num;
            }
            os << ']';
        }
    }
    os << "]}";
    d_count_ = 0;
    d_gaps_.clear();
    d_beats_.clear();
}

// ---------------------------------------------------------------------------------------------------------------
// Server: attach / detach

std::shared_ptr<StreamState> Server::attach(const Hello& h, std::uint64_t serial, std::function<void()> kick,
                                            std::uint64_t& next_seq) {
    if (!token_equal(h.token, opt.token)) throw ssm::UsageError("bad token");
    auto it = streams.find(h.stream_id);
    if (it != streams.end()) {
        auto s = it->second;
        if (s->ch != h.channels() || s->rate != h.sample_rate)
            throw ssm::UsageError("stream " + h.stream_id + " exists with " + std::to_string(s->ch) + " channels at " +
                                  std::to_string(s->rate) + " Hz; a resume must keep both");
        if (s->connected && s->kick_owner) {
            log("stream " + h.stream_id + ": new connection takes over from the old one");
            auto k = std::move(s->kick_owner);
            k();
        }
        s->connected = true;
        s->conn_serial = serial;
        s->kick_owner = std::move(kick);
        ++s->reconnects;
        next_seq = s->expected_seq;
        log("stream " + h.stream_id + " resumed at frame " + std::to_string(next_seq));
        return s;
    }
    if (streams.size() >= opt.max_streams)
        throw ssm::UsageError("too many streams (--max-streams " + std::to_string(opt.max_streams) + ")");
    const Chain* chain = &chain_;
    for (const auto& [glob, c] : chain_for_)
        if (::fnmatch(glob.c_str(), h.stream_id.c_str(), 0) == 0) {
            chain = &c;
            break;
        }
    const auto models = chain->models_for(h.sample_rate);  // throws for a model at another rate
    auto s = std::make_shared<StreamState>(*this, h, net::make_strand(pool_.get_executor()));
    s->prepare(models, policy, opt.record_dir, next_seq);
    s->expected_seq = next_seq;
    s->connected = true;
    s->conn_serial = serial;
    s->kick_owner = std::move(kick);
    streams[h.stream_id] = s;
    log("stream " + h.stream_id + ": " + std::to_string(h.channels()) + " channels at " + std::to_string(h.sample_rate) +
        " Hz" + (next_seq ? ", recording resumed at frame " + std::to_string(next_seq) : std::string()));
    return s;
}

void Server::detach(const std::shared_ptr<StreamState>& s, std::uint64_t serial) {
    if (!s || s->conn_serial != serial) return;  // a newer connection owns it
    s->connected = false;
    s->kick_owner = nullptr;
    s->disconnected_at_ns = unix_now_ns();
    s->post_flush(false);
}

// ---------------------------------------------------------------------------------------------------------------
// Ingest logic shared by the TCP and the WebSocket transports

class Ingest {
public:
    explicit Ingest(Server& srv) : srv_(srv), serial_(++srv.conn_serial) {}
    enum class Result { ok, full, error, bye };
    /** One whole frame payload of header type `t`. `reply` gets bytes to send (welcome or error). */
    Result on_frame(Type t, std::span<const std::byte> payload, std::vector<std::byte>& reply, std::function<void()> kick) {
        if (!stream_) {
            if (t != Type::hello) return fail(reply, "expected a hello frame first");
            Hello h;
            if (auto st = parse_hello(payload, h); !st) return fail(reply, st.error);
            try {
                std::uint64_t next = 0;
                stream_ = srv_.attach(h, serial_, std::move(kick), next);
                encode_welcome({next}, reply);
                return Result::ok;
            } catch (const std::exception& e) {
                return fail(reply, e.what());
            }
        }
        if (t == Type::bye) return Result::bye;
        if (t != Type::data) return fail(reply, "unexpected frame type after hello");
        DataView d;
        if (auto st = parse_data(payload, stream_->ch, d); !st) return fail(reply, st.error);
        auto& s = *stream_;
        const std::uint64_t end = d.seq + d.frames;
        if (end <= s.expected_seq) {  // already have all of it (resend after a resume)
            s.dup_frames += d.frames;
            return Result::ok;
        }
        const std::uint64_t trim = d.seq < s.expected_seq ? s.expected_seq - d.seq : 0;
        RecHdr h;
        h.recv_ns = unix_now_ns();
        if (d.seq > s.expected_seq) {
            h.flags |= kGapBefore;
            h.gap_frames = d.seq - s.expected_seq;
        }
        if (resumed_pending_) h.flags |= kResumed;
        if (!s.push(payload, trim, h)) {
            ++s.throttled;
            return Result::full;
        }
        resumed_pending_ = false;
        if (h.flags & kGapBefore) {
            ++s.gap_events;
            s.gap_frames += h.gap_frames;
            srv_.log("stream " + s.hello.stream_id + ": gap of " + std::to_string(h.gap_frames) + " frames before frame " +
                     std::to_string(d.seq) + " (marked, not filled)");
        }
        s.dup_frames += trim;
        s.rx_frames += d.frames - trim;
        s.expected_seq = end;
        return Result::ok;
    }
    std::size_t payload_limit() const { return stream_ ? max_data_payload(stream_->ch) : kMaxHelloPayload; }
    bool attached() const { return stream_ != nullptr; }
    void close() {
        srv_.detach(stream_, serial_);
        stream_.reset();
    }
    std::uint64_t serial() const { return serial_; }

private:
    Result fail(std::vector<std::byte>& reply, const std::string& why) {
        ++srv_.rejected;
        srv_.log("connection " + std::to_string(serial_) + " refused: " + why);
        encode_error(why, reply);
        return Result::error;
    }
    Server& srv_;
    std::uint64_t serial_;
    std::shared_ptr<StreamState> stream_;
    bool resumed_pending_ = true;
};

// ---------------------------------------------------------------------------------------------------------------
// TCP ingest session (binary protocol)

template <class S>
class TcpIngest : public std::enable_shared_from_this<TcpIngest<S>> {
public:
    TcpIngest(Server& srv, S&& s, std::array<std::byte, 4> first)
        : srv_(srv), s_(std::move(s)), ingest_(srv) {
        std::memcpy(hdr_.data(), first.data(), 4);
        buf_.resize(kMaxHelloPayload);
    }
    void start() { read_rest_of_header(4); }

private:
    void read_rest_of_header(std::size_t have) {
        beast::get_lowest_layer(s_).expires_after(timeout());
        net::async_read(s_, net::buffer(hdr_.data() + have, kHeaderBytes - have),
                        [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
    }
    std::chrono::steady_clock::duration timeout() const {
        const double t = ingest_.attached() ? srv_.opt.idle_timeout_s : srv_.opt.hello_timeout_s;
        return std::chrono::milliseconds(static_cast<long>(t * 1000));
    }
    void on_header(beast::error_code ec) {
        if (ec) return end(ec == beast::error::timeout ? "timed out waiting for data" : "");
        Header h;
        if (auto st = parse_header(hdr_, h); !st) return send_error(st.error);
        if (h.payload_bytes > ingest_.payload_limit())
            return send_error("frame payload of " + std::to_string(h.payload_bytes) + " bytes exceeds the limit of " +
                              std::to_string(ingest_.payload_limit()) + " for this stream");
        type_ = h.type;
        len_ = h.payload_bytes;
        net::async_read(s_, net::buffer(buf_.data(), len_),
                        [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_payload(ec); });
    }
    void on_payload(beast::error_code ec) {
        if (ec) return end(ec == beast::error::timeout ? "timed out inside a frame" : "");
        handle();
    }
    void handle() {
        reply_.clear();
        const bool was_attached = ingest_.attached();
        std::weak_ptr<TcpIngest> weak = this->shared_from_this();
        const auto r = ingest_.on_frame(type_, {buf_.data(), len_}, reply_, [weak] {
            if (auto p = weak.lock()) p->kicked();
        });
        switch (r) {
        case Ingest::Result::error: return send_error_bytes();
        case Ingest::Result::bye: return end("");
        case Ingest::Result::full: {  // back-pressure: stop reading, retry in 2 ms
            retry_ = std::make_unique<net::steady_timer>(s_.get_executor(), std::chrono::milliseconds(2));
            retry_->async_wait([self = this->shared_from_this()](beast::error_code e) {
                if (!e && !self->closed_) self->handle();
            });
            return;
        }
        case Ingest::Result::ok: break;
        }
        if (!was_attached && ingest_.attached()) buf_.resize(ingest_.payload_limit());
        if (!reply_.empty()) {
            net::async_write(s_, net::buffer(reply_), [self = this->shared_from_this()](beast::error_code e, std::size_t) {
                if (e) return self->end("");
                self->read_rest_of_header(0);
            });
            return;
        }
        read_rest_of_header(0);
    }
    void send_error(const std::string& why) {
        ++srv_.rejected;
        srv_.log("connection " + std::to_string(ingest_.serial()) + ": " + why);
        reply_.clear();
        encode_error(why, reply_);
        send_error_bytes();
    }
    void send_error_bytes() {
        beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(2));
        net::async_write(s_, net::buffer(reply_), [self = this->shared_from_this()](beast::error_code, std::size_t) {
            self->end("");
        });
    }
    void kicked() { end("taken over by a new connection", false); }  // a read is pending: no TLS close_notify
    void end(const std::string& why, bool graceful = true) {
        if (closed_) return;
        closed_ = true;
        if (!why.empty()) srv_.log("connection " + std::to_string(ingest_.serial()) + ": " + why);
        ingest_.close();
        if (graceful) close_gracefully(s_, this->shared_from_this());
        else close_now(s_);
    }

    Server& srv_;
    S s_;
    Ingest ingest_;
    std::array<std::byte, kHeaderBytes> hdr_{};
    std::vector<std::byte> buf_, reply_;
    Type type_{};
    std::size_t len_ = 0;
    std::unique_ptr<net::steady_timer> retry_;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// WebSocket ingest (same frames, one per binary message)

template <class S>
class WsIngest : public std::enable_shared_from_this<WsIngest<S>> {
public:
    WsIngest(Server& srv, S&& s) : srv_(srv), ws_(std::move(s)), ingest_(srv) {}
    void start(http::request<http::string_body> req) {
        beast::get_lowest_layer(ws_).expires_never();
        websocket::stream_base::timeout t{};
        t.handshake_timeout = std::chrono::seconds(5);
        t.idle_timeout = std::chrono::milliseconds(static_cast<long>(srv_.opt.idle_timeout_s * 1000));
        t.keep_alive_pings = false;
        ws_.set_option(t);
        ws_.read_message_max(kHeaderBytes + kMaxPayload);
        ws_.binary(true);
        ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) {
            if (!ec) self->read();
        });
    }

private:
    void read() {
        buf_.clear();
        ws_.async_read(buf_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }
    void on_read(beast::error_code ec) {
        if (ec) return end();
        handle();
    }
    void handle() {
        const auto data = buf_.cdata();
        std::span<const std::byte> all(static_cast<const std::byte*>(data.data()), data.size());
        Header h;
        reply_.clear();
        if (auto st = parse_header(all, h); !st) {
            encode_error(st.error, reply_);
            return send(true);
        }
        if (all.size() != kHeaderBytes + h.payload_bytes || h.payload_bytes > ingest_.payload_limit()) {
            encode_error("WebSocket message length does not match its frame header (or exceeds the limit)", reply_);
            return send(true);
        }
        std::weak_ptr<WsIngest> weak = this->shared_from_this();
        const auto r = ingest_.on_frame(h.type, all.subspan(kHeaderBytes), reply_, [weak] {
            if (auto p = weak.lock()) p->end();
        });
        if (r == Ingest::Result::full) {
            retry_ = std::make_unique<net::steady_timer>(ws_.get_executor(), std::chrono::milliseconds(2));
            retry_->async_wait([self = this->shared_from_this()](beast::error_code e) {
                if (!e && !self->closed_) self->handle();
            });
            return;
        }
        if (r == Ingest::Result::bye) return end();
        if (!reply_.empty()) return send(r == Ingest::Result::error);
        read();
    }
    void send(bool then_close) {
        ws_.async_write(net::buffer(reply_), [self = this->shared_from_this(), then_close](beast::error_code ec, std::size_t) {
            if (ec || then_close) return self->end();
            self->read();
        });
    }
    void end() {
        if (closed_) return;
        closed_ = true;
        ingest_.close();
        close_now(ws_);
    }
    Server& srv_;
    websocket::stream<S> ws_;
    Ingest ingest_;
    beast::flat_buffer buf_;
    std::vector<std::byte> reply_;
    std::unique_ptr<net::steady_timer> retry_;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// Viewer (WebSocket, text JSON snapshots)

template <class S>
class ViewerSession : public Viewer, public std::enable_shared_from_this<ViewerSession<S>> {
public:
    ViewerSession(Server& srv, S&& s) : srv_(srv), ws_(std::move(s)) {}
    void start(http::request<http::string_body> req) {
        beast::get_lowest_layer(ws_).expires_never();
        websocket::stream_base::timeout t{};
        t.handshake_timeout = std::chrono::seconds(5);
        t.idle_timeout = std::chrono::seconds(30);
        t.keep_alive_pings = true;
        ws_.set_option(t);
        ws_.read_message_max(4096);
        ws_.text(true);
        // A small kernel send buffer, so a viewer that does not read is noticed (queue full → drops) within
        // seconds instead of after megabytes of kernel buffering.
        beast::error_code ec;
        beast::get_lowest_layer(ws_).socket().set_option(net::socket_base::send_buffer_size(64 * 1024), ec);
        ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) {
            if (ec) return;
            self->srv_.viewers.insert(self);
            self->send(self->srv_.backlog(), unix_now_ns());
            self->read();
        });
    }
    void send(const std::shared_ptr<const std::string>& msg, std::int64_t now_ns) override {
        if (closed_) return;
        if (q_.size() >= kViewerQueue) {  // slow reader: drop this snapshot
            ++srv_.viewer_drops;
            if (!drop_since_) drop_since_ = now_ns;
            if (now_ns - drop_since_ > 10'000'000'000) {
                ++srv_.viewers_closed_slow;
                srv_.log("viewer dropped: it has not kept up for 10 s");
                end();
            }
            return;
        }
        drop_since_ = 0;
        q_.push_back(msg);
        if (q_.size() == 1) write();
    }
    void end() {
        if (closed_) return;
        closed_ = true;
        srv_.viewers.erase(this->shared_from_this());
        close_now(ws_);
    }

private:
    void write() {
        ws_.async_write(net::buffer(*q_.front()), [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->end();
            self->q_.pop_front();
            if (!self->q_.empty()) self->write();
        });
    }
    void read() {  // viewers send nothing we use; reading keeps control frames (ping/close) flowing
        ws_.async_read(in_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return self->end();
            self->in_.clear();
            self->read();
        });
    }
    Server& srv_;
    websocket::stream<S> ws_;
    beast::flat_buffer in_;
    std::deque<std::shared_ptr<const std::string>> q_;
    std::int64_t drop_since_ = 0;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// HTTP: the page, /stats, and WebSocket upgrades

std::string query_param(std::string_view target, std::string_view key) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return {};
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto kv = rest.substr(0, amp);
        const auto eq = kv.find('=');
        if (kv.substr(0, eq) == key && eq != std::string_view::npos) {
            std::string v;
            const auto raw = kv.substr(eq + 1);
            auto hexv = [](char c) {
                return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            };
            for (std::size_t i = 0; i < raw.size(); ++i) {
                if (raw[i] == '%' && i + 2 < raw.size() && hexv(raw[i + 1]) >= 0 && hexv(raw[i + 2]) >= 0) {
                    v += static_cast<char>(hexv(raw[i + 1]) * 16 + hexv(raw[i + 2]));
                    i += 2;
                } else {
                    v += raw[i] == '+' ? ' ' : raw[i];
                }
            }
            return v;
        }
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
    return {};
}

template <class S>
class HttpSession : public std::enable_shared_from_this<HttpSession<S>> {
public:
    HttpSession(Server& srv, S&& s, std::array<std::byte, 4> first) : srv_(srv), s_(std::move(s)) {
        auto b = buf_.prepare(4);
        std::memcpy(b.data(), first.data(), 4);
        buf_.commit(4);
    }
    void start() {
        parser_.emplace();
        parser_->header_limit(8192);
        parser_->body_limit(1024);
        beast::get_lowest_layer(s_).expires_after(std::chrono::milliseconds(static_cast<long>(srv_.opt.hello_timeout_s * 1000)));
        http::async_read(s_, buf_, *parser_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_request(ec);
        });
    }

private:
    void on_request(beast::error_code ec) {
        if (ec) return close(false);
        auto req = parser_->release();
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        const bool authed = token_equal(query_param(target, "token"), srv_.opt.token);
        if (websocket::is_upgrade(req)) {
            if (!authed) return respond(http::status::unauthorized, "text/plain", "token required\n", req.version());
            if (path == "/view") {
                if (srv_.viewers.size() >= srv_.opt.max_viewers)
                    return respond(http::status::service_unavailable, "text/plain", "too many viewers\n", req.version());
                std::make_shared<ViewerSession<S>>(srv_, std::move(s_))->start(std::move(req));
                return;
            }
            if (path == "/ingest") {
                std::make_shared<WsIngest<S>>(srv_, std::move(s_))->start(std::move(req));
                return;
            }
            return respond(http::status::not_found, "text/plain", "no such endpoint\n", req.version());
        }
        if (req.method() != http::verb::get) return respond(http::status::bad_request, "text/plain", "GET only\n", req.version());
        if (path == "/" || path == "/index.html") {
            if (!authed)
                return respond(http::status::unauthorized, "text/plain",
                               std::string("ssm-monitor: open ") + (kIsTls<S> ? "https" : "http") +
                                   "://HOST:PORT/?token=YOUR_TOKEN (the token given to serve)\n",
                               req.version());
            return respond(http::status::ok, "text/html; charset=utf-8", std::string(kWebPage), req.version());
        }
        if (path == "/stats") {
            if (!authed) return respond(http::status::unauthorized, "text/plain", "token required\n", req.version());
            return respond(http::status::ok, "application/json", srv_.stats_json(), req.version());
        }
        return respond(http::status::not_found, "text/plain", "not found\n", req.version());
    }
    void respond(http::status st, const char* type, std::string body, unsigned version) {
        auto res = std::make_shared<http::response<http::string_body>>(st, version);
        res->set(http::field::server, "ssm-monitor");
        res->set(http::field::content_type, type);
        res->set(http::field::cache_control, "no-store");
        res->keep_alive(false);
        res->body() = std::move(body);
        res->prepare_payload();
        beast::get_lowest_layer(s_).expires_after(std::chrono::seconds(10));
        http::async_write(s_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) { self->close(!ec); });
    }
    void close(bool graceful) {
        if constexpr (kIsTls<S>) {
            if (graceful) return close_gracefully(s_, this->shared_from_this());
            close_now(s_);
        } else {
            beast::error_code ec;
            s_.socket().shutdown(tcp::socket::shutdown_send, ec);
            s_.close();
        }
    }
    Server& srv_;
    S s_;
    beast::flat_buffer buf_;
    std::optional<http::request_parser<http::string_body>> parser_;
};

// ---------------------------------------------------------------------------------------------------------------
// Accept, sniff (binary frame or HTTP), periodic tick

template <class S>
class Sniffer : public std::enable_shared_from_this<Sniffer<S>> {
public:
    Sniffer(Server& srv, S&& s) : srv_(srv), s_(std::move(s)) {
        if constexpr (kIsTls<S>) {
            beast::error_code ec;
            peer_ = beast::get_lowest_layer(s_).socket().remote_endpoint(ec);
            keep_record_buffers(s_.native_handle());  // no malloc/free per received frame
        }
    }
    void start() {
        // One deadline for the TLS handshake and the first bytes together: a client that connects and never speaks,
        // or never finishes its handshake, is dropped after the hello timeout.
        beast::get_lowest_layer(s_).expires_after(std::chrono::milliseconds(static_cast<long>(srv_.opt.hello_timeout_s * 1000)));
        if constexpr (kIsTls<S>)
            s_.async_handshake(net::ssl::stream_base::server,
                               [self = this->shared_from_this()](beast::error_code ec) { self->on_handshake(ec); });
        else
            read_first();
    }

private:
    void on_handshake(beast::error_code ec) {
        --srv_.tls_handshakes;
        if (ec) {
            ++srv_.tls_failures;
            std::ostringstream peer;
            peer << peer_;
            srv_.log("TLS handshake from " + peer.str() + " failed: " +
                     (ec == beast::error::timeout ? std::string("none completed within the hello timeout") : tls_server_error(ec)) +
                     "; connection closed");
            close_now(s_);
            return;
        }
        read_first();
    }
    void read_first() {
        net::async_read(s_, net::buffer(first_), [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
            self->on_first(ec);
        });
    }
    void on_first(beast::error_code ec) {
        if (ec) {
            if (ec == beast::error::timeout) srv_.log("connection closed: silent for the hello timeout");
            close_now(s_);
            return;
        }
        if (first_[0] == std::byte{kMagic0} && first_[1] == std::byte{kMagic1}) {
            std::make_shared<TcpIngest<S>>(srv_, std::move(s_), first_)->start();
            return;
        }
        const char c0 = static_cast<char>(first_[0]);
        if (c0 >= 'A' && c0 <= 'Z') {  // an HTTP method
            std::make_shared<HttpSession<S>>(srv_, std::move(s_), first_)->start();
            return;
        }
        std::make_shared<TcpIngest<S>>(srv_, std::move(s_), first_)->start();  // replies "bad magic" and closes
    }
    Server& srv_;
    S s_;
    std::array<std::byte, 4> first_{};
    tcp::endpoint peer_;  // TLS: named in the log when the handshake fails (the socket may be closed by then)
};

void Server::accept() {
    acceptor_.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
        if (ec == net::error::operation_aborted) return;
        if (!ec) {
            s.set_option(tcp::no_delay(true), ec);
            if (!tls) {
                std::make_shared<Sniffer<PlainStream>>(*this, PlainStream(std::move(s)))->start();
            } else if (tls_handshakes >= max_tls_handshakes) {
                if (tls_refused_busy++ % 1000 == 0)  // a flood would fill the log: every 1000th is enough
                    log("TLS: " + std::to_string(tls_handshakes) + " handshakes in progress, the most allowed; new connections "
                        "are closed until some finish (" + std::to_string(tls_refused_busy) + " so far)");
                s.close(ec);
            } else {
                ++tls_handshakes;
                std::make_shared<Sniffer<TlsStream>>(*this, TlsStream(PlainStream(std::move(s)), *tls))->start();
            }
        }
        accept();
    });
}

void Server::on_tick() {
    const std::int64_t now = unix_now_ns();
    std::ostringstream os;
    os << "{\"t\":" << now << ",\"lat_p50\":" << latency.quantile_ms(0.5) << ",\"lat_p99\":" << latency.quantile_ms(0.99)
       << ",\"viewer_drops\":" << viewer_drops << ",\"streams\":[";
    bool first = true;
    for (auto it = streams.begin(); it != streams.end();) {
        auto& s = it->second;
        if (!s->connected && s->disconnected_at_ns && now - s->disconnected_at_ns > static_cast<std::int64_t>(opt.stream_ttl_s * 1e9)) {
            log("stream " + s->hello.stream_id + " forgotten after " + std::to_string(opt.stream_ttl_s) + " s disconnected");
            s->post_flush(true);
            it = streams.erase(it);
            continue;
        }
        if (!first) os << ',';
        first = false;
        s->snapshot_json(os, now);
        ++it;
    }
    os << "]}";
    auto msg = std::make_shared<const std::string>(os.str());
    history.push_back(msg);  // 5 s of snapshots or 16 MiB, whichever is less
    history_bytes += msg->size();
    while (history.size() > 50 || (history_bytes > (16u << 20) && history.size() > 1)) {
        history_bytes -= history.front()->size();
        history.pop_front();
    }
    for (auto v : std::vector<std::shared_ptr<Viewer>>(viewers.begin(), viewers.end())) v->send(msg, now);
    if (now - last_flush_tick_ >= 500'000'000) {  // idle streams get flushed too
        last_flush_tick_ = now;
        for (auto& [id, s] : streams) s->post_flush(false);
    }
    tick_.expires_after(std::chrono::milliseconds(100));
    tick_.async_wait([this](beast::error_code ec) {
        if (!ec) on_tick();
    });
}

std::string Server::stats_json() {
    std::ostringstream os;
    os << "{\"latency_ms\":{\"p50\":" << latency.quantile_ms(0.5) << ",\"p99\":" << latency.quantile_ms(0.99)
       << ",\"count\":" << latency.count() << "},\"rejected_connections\":" << rejected << ",\"viewers\":" << viewers.size()
       << ",\"viewer_drops\":" << viewer_drops << ",\"viewers_closed_slow\":" << viewers_closed_slow
       << ",\"nonfinite\":" << nonfinite_total.load() << ",\"tls\":" << (tls ? "true" : "false")
       << ",\"tls_handshake_failures\":" << tls_failures << ",\"tls_refused_busy\":" << tls_refused_busy << ",\"streams\":{";
    bool first = true;
    for (auto& [id, s] : streams) {
        if (!first) os << ',';
        first = false;
        json_str(os, id);
        os << ":{\"channels\":" << s->ch << ",\"rate\":" << s->rate << ",\"connected\":" << (s->connected ? "true" : "false")
           << ",\"received\":" << s->rx_frames << ",\"next_seq\":" << s->expected_seq << ",\"gaps\":" << s->gap_events
           << ",\"gap_frames\":" << s->gap_frames << ",\"dup_frames\":" << s->dup_frames << ",\"reconnects\":" << s->reconnects
           << ",\"throttled\":" << s->throttled << "}";
    }
    os << "}}";
    return os.str();
}

int Server::run() {
    tcp::endpoint ep(net::ip::make_address(opt.bind), opt.port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
    const auto port = acceptor_.local_endpoint().port();
    if (!opt.port_file.empty()) {
        std::ofstream(opt.port_file + ".tmp") << port << "\n";
        std::filesystem::rename(opt.port_file + ".tmp", opt.port_file);
    }
    const std::string hostport = opt.bind + ":" + std::to_string(port);
    if (tls)
        log("listening on " + hostport + ", TLS only (ingest: TLS or wss://.../ingest; view: https://" + hostport +
            "/?token=...)" + (chain_.size() ? ", chain " + chain_.text() : ""));
    else
        log("listening on " + hostport + " (ingest: TCP or ws://.../ingest; view: http://" + hostport + "/?token=...)" +
            (chain_.size() ? ", chain " + chain_.text() : ""));
    signals_.async_wait([this](beast::error_code, int sig) {
        log("signal " + std::to_string(sig) + ": closing");
        beast::error_code ec;
        acceptor_.close(ec);
        tick_.cancel();
        ioc.stop();
    });
    accept();
    on_tick();
    ioc.run();
    // Shut down: flush and close every recording, after the queued frames are processed.
    for (auto& [id, s] : streams) s->post_flush(true);
    pool_.join();
    const std::string st = stats_json();
    if (!opt.stats_file.empty()) std::ofstream(opt.stats_file) << st << "\n";
    log("final stats " + st);
    return 0;
}

}  // namespace

int run_serve(const ServeOptions& o0) {
    ServeOptions o = o0;
    if (o.cert.empty() != o.key.empty())
        throw ssm::UsageError(o.cert.empty() ? "--key needs --cert (TLS takes both: the certificate and its private key)"
                                             : "--cert needs --key (TLS takes both: the certificate and its private key)");
    // Loaded before anything else happens, so a bad certificate or key stops the server at once, with nothing made.
    std::optional<net::ssl::context> tls;
    if (!o.cert.empty()) tls.emplace(make_server_tls(o.cert, o.key));
    if (o.nonfinite != "zero" && o.nonfinite != "reset") throw ssm::UsageError("--nonfinite must be zero or reset");
    if (o.token.empty()) {
        std::random_device rd;
        const char* hex = "0123456789abcdef";
        for (int i = 0; i < 32; ++i) o.token += hex[rd() % 16];
        std::cerr << "ssm-monitor: no --token given; this run's token is " << o.token << "\n";
    }
    if (o.token.size() > kMaxTokenBytes) throw ssm::UsageError("--token longer than 256 bytes");
    Chain chain = Chain::parse(o.chain);
    std::vector<std::pair<std::string, Chain>> chain_for;
    for (const auto& gs : o.chain_for) {
        const auto eq = gs.find('=');
        if (eq == std::string::npos || eq == 0)
            throw ssm::UsageError("--chain-for needs GLOB=SPEC (e.g. 'ecg*=notch:60,model.safetensors'), got " + gs);
        chain_for.emplace_back(gs.substr(0, eq), Chain::parse(gs.substr(eq + 1)));
    }
    if (!o.record_dir.empty()) std::filesystem::create_directories(o.record_dir);
    Server srv(o, std::move(chain), std::move(chain_for), std::move(tls));
    return srv.run();
}

}  // namespace ssm::monitor
