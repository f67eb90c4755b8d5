"""Convert a state_dict of the state-spaces/s4 example.py `S4Model` built with S4 blocks
(`S4Block(mode='dplr')`, the full S4 NPLR/DPLR layer) into the native file, tensor names unchanged.

    python -m ssmtrain.import_s4 STATE_DICT.pt OUT.safetensors [--prenorm] [--rate R] [--name N]
        [--dt-transform exp] [--real-transform exp] [--imag-transform none] [--activation gelu] [--final-act glu]

STATE_DICT: `torch.save(model.state_dict(), ...)` (or safetensors) with encoder.*, s4_layers.{i}.layer.kernel.
{inv_dt, A_real, A_imag, B, C, P, l_kernel}, s4_layers.{i}.layer.D, s4_layers.{i}.output_linear.0.*, norms.{i}.*,
decoder.*. Shapes give d_input, d_output, d_model, d_state and rank. The only change to the tensors: the int64
buffer `l_kernel` is stored as an F64 scalar (the native reader takes floating dtypes). Options the file does not
record (transforms, activation, final_act) are the S4Block defaults unless given. The reference mean-pools over
time before its decoder; the native model runs the decoder on every time step (causal (T, d_output) output).
See docs/families-b.md for the `s4` layer.
"""

import argparse
import json
import re

import numpy as np
import torch

from .import_s4d import load_state_dict


def native_from_state_dict(sd, prenorm=False, sample_rate=0, name="s4-model", dt_transform="exp",
                           real_transform="exp", imag_transform="none", activation="gelu", final_act="glu"):
    """-> (config dict, {name: numpy array}) for the native file."""
    d_model, d_input = sd["encoder.weight"].shape
    d_output = sd["decoder.weight"].shape[0]
    idx = sorted({int(m.group(1)) for k in sd for m in [re.match(r"s4_layers\.(\d+)\.", k)] if m})
    layers = [{"type": "linear", "name": "encoder", "in": int(d_input), "out": int(d_model)}]
    for i in idx:
        p = f"s4_layers.{i}.layer.kernel."
        rank, _, n2, _ = sd[p + "P"].shape
        layers.append({"type": "residual", "prenorm": bool(prenorm),
                       "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": int(d_model)},
                       "body": [{"type": "s4", "name": f"s4_layers.{i}", "d_model": int(d_model), "d_state": 2 * int(n2),
                                 "rank": int(rank), "dt_transform": dt_transform, "real_transform": real_transform,
                                 "imag_transform": imag_transform, "activation": activation, "final_act": final_act}]})
    layers.append({"type": "linear", "name": "decoder", "in": int(d_model), "out": int(d_output)})
    config = {"format": "ssmstream", "version": 1, "name": name, "sample_rate": sample_rate, "layers": layers,
              "description": "imported from a state-spaces/s4 example.py S4Model with S4Block(mode='dplr') layers"}
    tensors = {}
    for k, v in sd.items():
        v = v.detach().cpu()
        if k.endswith("num_batches_tracked"):
            continue
        if v.dtype in (torch.int64, torch.int32):
            tensors[k] = np.asarray(v.numpy(), dtype=np.float64).reshape(tuple(v.shape))
        else:
            tensors[k] = np.ascontiguousarray(v.float().numpy())
    return config, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("state_dict")
    ap.add_argument("out")
    ap.add_argument("--prenorm", action="store_true")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--name", default="s4-model")
    ap.add_argument("--dt-transform", default="exp")
    ap.add_argument("--real-transform", default="exp")
    ap.add_argument("--imag-transform", default="none")
    ap.add_argument("--activation", default="gelu")
    ap.add_argument("--final-act", default="glu")
    a = ap.parse_args()
    from safetensors.numpy import save_file
    config, tensors = native_from_state_dict(load_state_dict(a.state_dict), a.prenorm, a.rate, a.name, a.dt_transform,
                                             a.real_transform, a.imag_transform, a.activation, a.final_act)
    save_file(tensors, a.out, metadata={"ssmstream": json.dumps(config)})
    print(f"{a.state_dict} -> {a.out}: {len(config['layers']) - 2} S4 layers")


if __name__ == "__main__":
    main()
