#pragma once
// `ssm-monitor serve`: ingest (TCP and WebSocket), per-channel processing on worker threads, recording, web view;
// plaintext, or TLS only when given a certificate and key.
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace ssm::monitor {

struct ServeOptions {
    std::string bind = "127.0.0.1";
    unsigned short port = 7800;
    std::string token;              // empty: a random token is made and printed
    std::filesystem::path record_dir;  // empty: no recording
    std::string chain;
    std::vector<std::string> chain_for;  // "GLOB=SPEC": streams whose id matches GLOB get SPEC instead of `chain`
    std::string nonfinite = "zero";  // zero | reset
    unsigned workers = 0;            // 0: hardware threads
    double hello_timeout_s = 5;      // a connection must send its hello (or HTTP request) within this
    double idle_timeout_s = 30;      // a stream silent this long is disconnected (it can resume)
    double stream_ttl_s = 600;       // a disconnected stream is forgotten (recording closed) after this
    std::size_t max_streams = 128, max_viewers = 16;
    std::string cert, key;           // PEM files; both given: every connection speaks TLS (1.2 or later) only
    std::string port_file;           // write the bound port here (for tests with --port 0)
    std::string stats_file;          // write final statistics JSON here at exit
    bool quiet = false;
};

/** Runs until SIGINT/SIGTERM. Returns the exit status. Throws ssm::UsageError for bad options. */
int run_serve(const ServeOptions& o);

}  // namespace ssm::monitor
