#pragma once
// `ssm-monitor send` (the reference client) and `ssm-monitor replay`.
#include <cstdint>
#include <string>
#include <vector>

namespace ssm::monitor {

struct SendOptions {
    std::string host = "127.0.0.1";
    unsigned short port = 7800;
    std::string token, id = "dev1";
    std::string source = "synthetic";  // synthetic | a WFDB record (.hea) | a recording directory
    std::size_t channels = 2;          // synthetic only
    double rate = 250;                 // synthetic only
    double seconds = 10;               // synthetic length; records: at most this long (0 = whole record)
    double start_s = 0;                // records: start this far in
    std::size_t block = 0;             // frames per data frame (0: rate/20, i.e. 50 ms)
    double speed = 1;                  // pacing: 1 = real time, 10 = ten times faster; 0 = as fast as possible
    bool websocket = false;            // send over ws://host:port/ingest instead of raw TCP
    bool tls = false;                  // TLS, verifying the server against the system's trusted certificates
    std::string ca;                    // PEM: verify the server against this CA or certificate only (implies tls)
    bool insecure = false;             // TLS without verifying the server (implies tls; the caller warns)
    std::vector<std::uint64_t> skip;   // test hooks: data frames (by index) never sent → a gap at the server
    std::vector<std::uint64_t> nan_at; // frame indices whose channel-0 sample is sent as NaN
    std::vector<std::uint64_t> drop_at;  // data frame indices after which the connection is cut and resumed
    int retries = 20;                  // reconnection attempts (backoff 0.1 s → 2 s)
    bool quiet = false;
};

/** Streams the source; returns 0 when every frame was sent, 1 on a refusal (message on stderr). */
int run_send(const SendOptions& o);

/** The deterministic synthetic signal: channel c at frame n (documented in PROTOCOL.md, used by the tests). */
float synthetic_sample(std::size_t c, std::uint64_t n, double rate);

/** `replay RECORD --dump CSV`: writes the record (WFDB or recording directory) as CSV, one row per frame with its
 * seq first; gaps of a recording are listed on stderr. Returns the frame count. */
std::size_t dump_csv(const std::string& source, const std::string& csv);

}  // namespace ssm::monitor
