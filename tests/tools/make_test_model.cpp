// Writes a random S4D example-shaped native model: a fixture for CLI and package tests.
// usage: make_test_model OUT [d_input d_output d_model n_layers d_state sample_rate prenorm(0|1) [statedict]]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "support.hpp"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: make_test_model OUT [d_input d_output d_model n_layers d_state sample_rate prenorm]\n");
        return 2;
    }
    ssm::test::S4DModelSpec s;
    auto arg = [&](int i, auto def) { return argc > i ? static_cast<decltype(def)>(std::atof(argv[i])) : def; };
    s.d_input = arg(2, s.d_input);
    s.d_output = arg(3, s.d_output);
    s.d_model = arg(4, s.d_model);
    s.n_layers = arg(5, s.n_layers);
    s.d_state = arg(6, s.d_state);
    s.sample_rate = arg(7, s.sample_rate);
    s.prenorm = arg(8, 0) != 0;
    const auto bytes = ssm::test::make_s4d_model_bytes(s);
    if (argc > 9 && std::string(argv[9]) == "statedict") {  // the same weights as a bare PyTorch state_dict file
        const auto f = ssm::TensorFile::from_bytes(bytes, "model");
        std::vector<ssm::TensorData> t;
        for (const auto& v : f.tensors()) t.push_back({v.name, v.shape, ssm::TensorFile::to_double(v), ssm::DType::F32});
        ssm::write_safetensors(argv[1], {}, t);
        return 0;
    }
    ssm::write_file_atomically(argv[1], bytes);
    return 0;
}
