// ssm-monitor: stream electrodes in, clean each channel with SSM models live, record everything, watch it in a
// browser. Subcommands: serve, send (the reference client), replay (a WFDB record or a recording, as a device would).
#include <CLI/CLI.hpp>
#include <csignal>
#include <atomic>
#include <iostream>
#include <thread>
#include <vector>

#include "client.hpp"
#include "server.hpp"
#include "ssmstream/error.hpp"

int main(int argc, char** argv) {
    using namespace ssm::monitor;
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"ssm-monitor: live EEG/ECG streaming monitor (protocol: apps/ssm-monitor/PROTOCOL.md)"};
    app.require_subcommand(1);

    ServeOptions so;
    auto* serve = app.add_subcommand("serve", "accept streams, process each channel through the chain, record, serve the web view");
    serve->add_option("--bind", so.bind, "address to listen on")->capture_default_str();
    serve->add_option("--port", so.port, "TCP port (binary protocol, HTTP and WebSocket on the same port; 0 = any)")->capture_default_str();
    serve->add_option("--token", so.token, "token required from every device and viewer (default: a random one, printed)");
    serve->add_option("--record", so.record_dir, "record every received sample under DIR/<stream id>/");
    serve->add_option("--chain", so.chain, "per-channel chain, e.g. notch:60,bandpass:0.5:40,models/ecg-denoiser/ecg-denoiser.safetensors");
    serve->add_option("--chain-for", so.chain_for, "GLOB=SPEC: streams whose id matches GLOB use SPEC (repeatable; first match wins)");
    serve->add_option("--nonfinite", so.nonfinite, "NaN/Inf input samples: zero (replace by 0) or reset (replace and reset the chain state)")->capture_default_str();
    serve->add_option("--workers", so.workers, "processing threads (0 = one per core)")->capture_default_str();
    serve->add_option("--hello-timeout", so.hello_timeout_s, "seconds a new connection has to say hello")->capture_default_str();
    serve->add_option("--idle-timeout", so.idle_timeout_s, "seconds of silence before a stream's connection is closed")->capture_default_str();
    serve->add_option("--stream-ttl", so.stream_ttl_s, "seconds a disconnected stream is kept for resume")->capture_default_str();
    serve->add_option("--max-streams", so.max_streams)->capture_default_str();
    serve->add_option("--max-viewers", so.max_viewers)->capture_default_str();
    serve->add_option("--cert", so.cert, "TLS certificate chain (PEM); with --key, the port speaks TLS 1.2+ only (binary protocol, HTTPS, WSS)");
    serve->add_option("--key", so.key, "TLS private key (PEM, unencrypted) for --cert");
    serve->add_option("--port-file", so.port_file, "write the bound port to this file once listening");
    serve->add_option("--stats-file", so.stats_file, "write final statistics (JSON) here on exit");
    serve->add_flag("--quiet", so.quiet);

    SendOptions to;
    auto add_tls = [&](CLI::App* c) {
        c->add_flag("--tls", to.tls, "connect over TLS; the server's certificate must chain to the system's trusted certificates and name --host");
        c->add_option("--ca", to.ca, "PEM file (a CA, or the server's own self-signed certificate) to verify the server against instead; implies --tls");
        c->add_flag("--insecure", to.insecure, "TLS WITHOUT verifying the server's certificate (encrypted but not authenticated: testing only); implies --tls");
    };
    auto add_common = [&](CLI::App* c) {
        c->add_option("--host", to.host)->capture_default_str();
        c->add_option("--port", to.port)->capture_default_str();
        c->add_option("--token", to.token, "the server's token")->required();
        c->add_option("--id", to.id, "stream id (1-64 of [A-Za-z0-9_.-]); the same id resumes the same stream")->capture_default_str();
        c->add_option("--block", to.block, "frames per data frame (default: 50 ms)");
        c->add_flag("--ws", to.websocket, "send over WebSocket (ws://host:port/ingest, wss:// with TLS) instead of raw TCP");
        add_tls(c);
        c->add_option("--retries", to.retries, "reconnection attempts")->capture_default_str();
        c->add_option("--skip-frame", to.skip, "(testing) never send these data frames: the server sees a gap");
        c->add_option("--nan-at", to.nan_at, "(testing) send channel 0 of these sample frames as NaN");
        c->add_option("--cut-after", to.drop_at, "(testing) cut the connection after these data frames, then resume");
        c->add_flag("--quiet", to.quiet);
    };
    auto* send = app.add_subcommand("send", "reference client: stream a synthetic signal, a WFDB record or a recording");
    add_common(send);
    send->add_option("--source", to.source, "synthetic | RECORD.hea (WFDB) | a recording directory")->capture_default_str();
    send->add_option("--channels", to.channels, "synthetic: channel count")->capture_default_str();
    send->add_option("--rate", to.rate, "synthetic: sample rate")->capture_default_str();
    send->add_option("--seconds", to.seconds, "how long (0 = whole record)")->capture_default_str();
    send->add_option("--start", to.start_s, "records: start this many seconds in")->capture_default_str();
    send->add_option("--speed", to.speed, "1 = real time, 10 = 10x, 0 = as fast as possible")->capture_default_str();
    std::size_t nstreams = 1;
    send->add_option("--streams", nstreams, "run N streams at once (ids ID-0 … ID-N-1), one thread each (load tests)")->capture_default_str();

    std::string record, dump;
    bool realtime = false;
    SendOptions& ro = to;
    auto* replay = app.add_subcommand("replay", "stream a WFDB record or a recording as a device would, or --dump it to CSV");
    replay->add_option("record", record, "WFDB record (.hea) or a recording directory")->required();
    replay->add_option("--dump", dump, "write the record to CSV (seq + channels; gaps listed on stderr) instead of sending");
    replay->add_flag("--realtime", realtime, "pace at the record's own rate (the default for replay; --speed changes it)");
    replay->add_option("--speed", ro.speed, "1 = real time, 10 = 10x, 0 = as fast as possible")->capture_default_str();
    replay->add_option("--seconds", ro.seconds, "at most this long (0 = whole record)")->capture_default_str();
    replay->add_option("--start", ro.start_s, "start this many seconds in")->capture_default_str();
    replay->add_option("--host", ro.host)->capture_default_str();
    replay->add_option("--port", ro.port)->capture_default_str();
    replay->add_option("--token", ro.token, "the server's token");
    replay->add_option("--id", ro.id)->capture_default_str();
    replay->add_option("--block", ro.block);
    replay->add_flag("--ws", ro.websocket, "send over WebSocket (ws://host:port/ingest, wss:// with TLS) instead of raw TCP");
    add_tls(replay);
    replay->add_flag("--quiet", ro.quiet);

    CLI11_PARSE(app, argc, argv);
    if (to.insecure && ((*send) || (*replay && dump.empty())))
        std::cerr << "ssm-monitor: WARNING: --insecure: the server's certificate is not checked, so anyone on the path can pose "
                     "as the server and read the token and the data. Use --ca FILE (or --tls) outside of tests.\n";
    try {
        if (*serve) return run_serve(so);
        if (*send) {
            if (nstreams <= 1) return run_send(to);
            std::vector<std::thread> th;
            std::atomic<int> failed{0};
            for (std::size_t i = 0; i < nstreams; ++i)
                th.emplace_back([&, i] {
                    SendOptions o = to;
                    o.id = to.id + "-" + std::to_string(i);
                    try {
                        if (run_send(o) != 0) ++failed;
                    } catch (const std::exception& e) {
                        std::cerr << "ssm-monitor send " << o.id << ": " << e.what() << "\n";
                        ++failed;
                    }
                });
            for (auto& t : th) t.join();
            return failed ? 1 : 0;
        }
        if (*replay) {
            if (!dump.empty()) {
                const auto n = dump_csv(record, dump);
                std::cerr << "ssm-monitor replay: wrote " << n << " frames to " << dump << "\n";
                return 0;
            }
            if (ro.token.empty()) throw ssm::UsageError("replay: --token is required to send (or use --dump FILE)");
            if (realtime) ro.speed = 1;
            ro.source = record;
            if (ro.seconds == 10 && !replay->count("--seconds")) ro.seconds = 0;
            return run_send(ro);
        }
    } catch (const std::exception& e) {
        std::cerr << "ssm-monitor: " << e.what() << "\n";
        return 2;
    }
    return 0;
}
