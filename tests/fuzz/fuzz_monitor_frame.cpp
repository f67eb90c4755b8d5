// libFuzzer target for ssm-monitor's frame parser (apps/ssm-monitor/protocol.cpp): bytes → FrameSplitter → each
// complete frame parsed by its type, a data frame against the channel count of the last hello that parsed. Also
// every parser on the raw bytes. A parse error is the expected answer; a crash, a sanitizer report, an exception, or
// a hello that does not survive encode → parse unchanged is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "protocol.hpp"

using namespace ssm::monitor;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
    Header h;
    Hello hello;
    DataView d;
    Welcome w;
    std::string text;
    (void)parse_header(in, h);
    (void)parse_hello(in, hello);
    (void)parse_data(in, 1 + (size % 7), d);
    (void)parse_welcome(in, w);
    (void)parse_error(in, text);

    static FrameSplitter sp;  // 1 MiB buffer: made once
    sp.reset();
    std::size_t channels = 0, pos = 0;
    while (pos < size) {
        const std::size_t used = sp.feed(in.subspan(pos));
        pos += used;
        if (sp.failed()) break;
        if (!sp.ready()) {
            if (used == 0) std::abort();  // no progress without a frame or a failure: a splitter bug
            continue;
        }
        const auto p = sp.payload();
        if (p.size() != sp.header().payload_bytes) std::abort();
        switch (sp.header().type) {
        case Type::hello:
            if (Hello g; parse_hello(p, g)) {
                channels = g.channels();
                std::vector<std::byte> again;
                encode_hello(g, again);
                Hello g2;
                if (!parse_hello(std::span<const std::byte>(again).subspan(kHeaderBytes), g2) || g2.stream_id != g.stream_id ||
                    g2.token != g.token || g2.names != g.names || g2.units != g.units || g2.sample_rate != g.sample_rate)
                    std::abort();
            }
            break;
        case Type::data:
            if (DataView dv; parse_data(p, channels, dv)) {
                float acc = 0;
                for (std::size_t i = 0; i < std::size_t{dv.frames} * channels; ++i) acc += sample_at(dv, i);  // reads every sample in bounds
                (void)acc;
            }
            break;
        case Type::welcome: (void)parse_welcome(p, w); break;
        case Type::error: (void)parse_error(p, text); break;
        case Type::bye: break;
        }
        sp.next();
    }
    return 0;
}
