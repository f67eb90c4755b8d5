// Peak-memory driver: a mono raw float32 file → ssm::Batch::process in chunks → raw float32 file (or /dev/null),
// the way a long offline run should work. Prints peak RSS (getrusage ru_maxrss) and throughput as one JSON line.
// usage: mem_driver MODEL IN.f32 OUT.f32 [auto|stream|fft] [threads] [chunk_frames]
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: mem_driver MODEL IN.f32 OUT.f32 [auto|stream|fft] [threads] [chunk_frames]\n");
        return 2;
    }
    try {
        auto model = ssm::Model::load(argv[1]);
        const std::string backend = argc > 4 ? argv[4] : "auto";
        ssm::BatchOptions o;
        o.backend = ssm::backend_from_string(backend);
        o.threads = argc > 5 ? static_cast<std::size_t>(std::atol(argv[5])) : 0;
        const std::size_t chunk = argc > 6 ? static_cast<std::size_t>(std::atol(argv[6])) : (1u << 16);
        const std::size_t cin = model->info().in_channels, cout = model->info().out_channels;
        ssm::Batch batch(model, o);
        std::FILE* fi = std::fopen(argv[2], "rb");
        std::FILE* fo = std::fopen(argv[3], "wb");
        if (!fi || !fo) {
            std::fprintf(stderr, "mem_driver: cannot open input or output\n");
            return 1;
        }
        std::vector<float> in(chunk * cin), out(chunk * cout);
        std::size_t frames = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (;;) {
            const std::size_t n = std::fread(in.data(), sizeof(float) * cin, chunk, fi);
            if (n == 0) break;
            batch.process(in.data(), out.data(), n);
            std::fwrite(out.data(), sizeof(float) * cout, n, fo);
            frames += n;
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fclose(fi);
        std::fclose(fo);
        rusage ru{};
        getrusage(RUSAGE_SELF, &ru);
        std::printf("{\"frames\": %zu, \"seconds\": %.3f, \"samples_per_s\": %.1f, \"threads\": %zu, \"backend\": \"%s\", \"max_rss_kb\": %ld}\n",
                    frames, secs, static_cast<double>(frames) / secs, batch.threads(), backend.c_str(), ru.ru_maxrss);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mem_driver: %s\n", e.what());
        return 1;
    }
    return 0;
}
