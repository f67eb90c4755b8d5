// usage: app [MODEL]. Without MODEL, builds a 1 → 2 linear + relu model in memory; prints the outputs of a Stream.
#include <cstdio>
#include <ssmstream/c_api.h>
#include <ssmstream/ssmstream.hpp>

int main(int argc, char** argv) try {
    std::shared_ptr<const ssm::Model> model;
    if (argc > 1) {
        model = ssm::Model::load(argv[1]);
    } else {  // y = relu([2x + 0.5, -x])
        const auto bytes = ssm::encode_safetensors(
            {{"ssmstream", R"({"format":"ssmstream","version":1,"name":"consumer","layers":[)"
                           R"({"type":"linear","name":"fc","in":1,"out":2},{"type":"relu"}]})"}},
            {{"fc.weight", {2, 1}, {2.0, -1.0}}, {"fc.bias", {2}, {0.5, 0.0}}});
        model = ssm::Model::from_tensor_file(ssm::TensorFile::from_bytes(bytes, "in-memory"));
    }
    const auto& info = model->info();
    std::printf("ssmstream %s model %s in %zu out %zu\n", ssm::version_string, info.name.c_str(), info.in_channels, info.out_channels);
    ssm::Stream stream(model);
    stream.prepare({info.sample_rate, 4, 0});
    std::vector<float> in(4 * info.in_channels), out(4 * info.out_channels);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 4) - 1.0f;  // -1 0 1 2
    stream.process(in.data(), out.data(), 4);
    std::printf("out");
    for (float v : out) std::printf(" %g", v);
    std::printf("\nc_api last_error '%s'\n", ssm_last_error());
    return 0;
} catch (const ssm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
}
