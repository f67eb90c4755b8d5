// Writes a benchmark model file. usage: bench_make_model OUT [audio|layer|conv] [H N blocks dt_min]
//   audio: encoder 1→H, `blocks` pre-norm residual S4D blocks (gelu, glu), decoder H→1, 16 kHz (default H=64 N=64 blocks=4)
//   layer: one S4D layer (gelu, glu), H channels in and out, any rate
//   conv:  one S4D layer with activation and output "none" (the convolution alone, as BM_S4DConv)
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench_models.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_make_model OUT [audio|layer|conv] [H N blocks dt_min]\n");
        return 2;
    }
    const std::string kind = argc > 2 ? argv[2] : "audio";
    ssm::bench::S4DParams p;
    if (argc > 3) p.H = static_cast<std::size_t>(std::atol(argv[3]));
    if (argc > 4) p.N = static_cast<std::size_t>(std::atol(argv[4]));
    const std::size_t blocks = argc > 5 ? static_cast<std::size_t>(std::atol(argv[5])) : 4;
    if (argc > 6) p.dt_min = std::atof(argv[6]);
    if (kind == "conv") p.activation = p.output = "none";
    const auto bytes = kind == "audio" ? ssm::bench::audio_model_bytes(p, blocks) : ssm::bench::single_s4d_bytes(p);
    ssm::write_file_atomically(argv[1], bytes);
    return 0;
}
