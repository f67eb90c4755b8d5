"""Convert a state_dict of the state-spaces/s4 example.py `S4Model` into the native file.

    python -m ssmtrain.import_s4d STATE_DICT.pt OUT.safetensors --prenorm|--no-prenorm --disc zoh \
        --sample-rate R [--name N]

STATE_DICT is `torch.save(model.state_dict(), ...)` (or a safetensors file of it) with keys encoder.weight,
s4_layers.{i}.kernel.log_dt, ..., norms.{i}.weight, decoder.weight. d_input, d_output, d_model, d_state and
n_layers are read from the shapes. The reference model mean-pools over time before its decoder (a classifier);
the native model has no pooling: the decoder runs on every time step, giving a causal (T, d_output) output.
"""

import argparse
import re
import sys

import torch

from .export import export_native
from .layers import S4DModel


def load_state_dict(path):
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        sd = load_file(path)
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    return sd


def model_from_state_dict(sd, prenorm, disc="zoh", activation="gelu"):
    """Build an S4DModel holding the reference S4Model's weights (shapes inferred)."""
    d_model, d_input = sd["encoder.weight"].shape
    d_output = sd["decoder.weight"].shape[0]
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(r"s4_layers\.(\d+)\.", k)] if m})
    n_layers = len(idx)
    if idx != list(range(n_layers)):
        raise ValueError(f"s4_layers indices not contiguous: {idx}")
    d_state = 2 * sd["s4_layers.0.kernel.log_A_real"].shape[-1]
    ow = sd.get("s4_layers.0.output_linear.0.weight")
    output = "none" if ow is None else ("glu" if ow.shape[0] == 2 * d_model else "linear")
    use_B = "s4_layers.0.kernel.B" in sd
    model = S4DModel(d_input, d_output, d_model=d_model, n_layers=n_layers, d_state=d_state, prenorm=prenorm,
                     disc=disc, activation=activation, output=output, use_B=use_B)
    own = model.state_dict()
    missing, surplus = set(own) - set(sd), set(sd) - set(own)
    if missing or surplus:
        raise ValueError(f"state_dict does not match S4Model: missing {sorted(missing)}, surplus {sorted(surplus)}")
    model.load_state_dict({k: sd[k].reshape(own[k].shape).to(own[k].dtype) for k in own}, strict=True)
    return model.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state_dict")
    ap.add_argument("out")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--prenorm", dest="prenorm", action="store_true")
    g.add_argument("--no-prenorm", dest="prenorm", action="store_false")
    ap.add_argument("--disc", default="zoh", choices=["zoh", "bilinear"])
    ap.add_argument("--activation", default="gelu", choices=["gelu", "none"])
    ap.add_argument("--sample-rate", type=float, required=True)
    ap.add_argument("--name", default=None)
    ap.add_argument("--description", default="imported from a state-spaces/s4 example.py S4Model state_dict")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    a = ap.parse_args(argv)
    model = model_from_state_dict(load_state_dict(a.state_dict), a.prenorm, a.disc, a.activation)
    sr = int(a.sample_rate) if float(a.sample_rate).is_integer() else a.sample_rate
    name = a.name or re.sub(r"\.(pt|pth|safetensors)$", "", a.state_dict.rsplit("/", 1)[-1])
    export_native(model, a.out, sample_rate=sr, name=name, description=a.description,
                  dtype=getattr(torch, a.dtype))
    print(f"wrote {a.out}: d_input={model.d_input} d_output={model.d_output} d_model={model.d_model} "
          f"n_layers={len(model.s4_layers)} d_state={model.s4_layers[0].n} prenorm={a.prenorm} disc={a.disc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
