"""Write and read the ssmstream native model file (docs/model-format.md): a safetensors file whose
`__metadata__["ssmstream"]` is the JSON config string."""

import json

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .layers import S4D, S4DModel

FORMAT = "ssmstream"
VERSION = 1


def s4d_config(layer, name):
    return {
        "type": "s4d",
        "name": name,
        "d_model": layer.h,
        "d_state": layer.n,
        "disc": layer.disc,
        "activation": layer.activation_name,
        "output": layer.output_name,
    }


def model_layers(model):
    """Config layer list for an S4DModel (encoder, residual blocks, decoder) or a bare S4D (one layer "s4d")."""
    if isinstance(model, S4D):
        return [s4d_config(model, "s4d")]
    if not isinstance(model, S4DModel):
        raise TypeError(f"cannot export {type(model).__name__}")
    layers = [{"type": "linear", "name": "encoder", "in": model.encoder.in_features,
               "out": model.encoder.out_features, "bias": model.encoder.bias is not None}]
    for i, (s4, norm) in enumerate(zip(model.s4_layers, model.norms)):
        layers.append({
            "type": "residual",
            "prenorm": bool(model.prenorm),
            "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": norm.normalized_shape[0], "eps": norm.eps},
            "body": [s4d_config(s4, f"s4_layers.{i}")],
        })
    layers.append({"type": "linear", "name": "decoder", "in": model.decoder.in_features,
                   "out": model.decoder.out_features, "bias": model.decoder.bias is not None})
    return layers


def model_tensors(model):
    sd = model.state_dict()
    if isinstance(model, S4D):
        sd = {"s4d." + k: v for k, v in sd.items()}
    return sd


def write_native(path, layers, tensors, sample_rate, name, description="", dtype=torch.float32,
                 latency_samples=0):
    """Low-level writer: `layers` is the config layer list, `tensors` a name -> tensor/array dict."""
    config = {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "description": description,
        "sample_rate": sample_rate,
        "latency_samples": latency_samples,
        "layers": layers,
    }
    out = {}
    for k, v in tensors.items():
        t = torch.as_tensor(v).detach().cpu()
        out[k] = t.to(dtype).contiguous().clone()
    save_file(out, str(path), metadata={FORMAT: json.dumps(config)})
    return config


def export_native(model, path, sample_rate, name, description="", dtype=torch.float32):
    """Write `model` (S4DModel or a bare S4D) as a native file. Returns the config dict."""
    return write_native(path, model_layers(model), model_tensors(model), sample_rate, name, description, dtype)


def load_native(path):
    """-> (config dict, {name: numpy array}) with arrays in their stored dtype (BF16 is widened to float32)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if FORMAT not in meta:
            raise ValueError(f"{path}: no __metadata__[{FORMAT!r}]")
        config = json.loads(meta[FORMAT])
        arrays = {}
        for k in f.keys():
            t = f.get_tensor(k)
            if t.dtype == torch.bfloat16:
                t = t.float()
            arrays[k] = t.numpy()
    if config.get("format") != FORMAT or config.get("version") != VERSION:
        raise ValueError(f"{path}: not an {FORMAT} v{VERSION} config")
    return config, arrays


def _find_s4d(layers):
    out = []
    for layer in layers:
        if layer["type"] == "s4d":
            out.append(layer)
        elif layer["type"] == "residual":
            out.extend(_find_s4d(layer["body"]))
    return out


def build_from_native(path):
    """Rebuild the PyTorch module from a native file written by export_native (an S4DModel, or an S4D for a
    one-layer file). Raises on other layouts."""
    config, arrays = load_native(path)
    layers = config["layers"]
    s4s = _find_s4d(layers)
    if not s4s:
        raise ValueError("no s4d layer")
    first = s4s[0]
    use_B = f"{first['name']}.kernel.B" in arrays
    kw = dict(d_state=first["d_state"], disc=first["disc"], activation=first["activation"], output=first["output"])
    if len(layers) == 1 and layers[0]["type"] == "s4d":
        model = S4D(first["d_model"], use_B=use_B, **kw)
        prefix = first["name"] + "."
        arrays = {k[len(prefix):]: v for k, v in arrays.items()}
    else:
        enc, dec = layers[0], layers[-1]
        res = layers[1:-1]
        if enc["type"] != "linear" or dec["type"] != "linear" or any(l["type"] != "residual" for l in res):
            raise ValueError("expected linear, residual..., linear")
        model = S4DModel(enc["in"], dec["out"], d_model=first["d_model"], n_layers=len(res),
                         prenorm=bool(res[0]["prenorm"]) if res else False, use_B=use_B, **kw)
        for i, r in enumerate(res):
            model.norms[i].eps = r["norm"].get("eps", 1e-5)
    own = model.state_dict()
    if set(own) != set(arrays):
        raise ValueError(f"tensor names differ: missing {sorted(set(own) - set(arrays))}, "
                         f"surplus {sorted(set(arrays) - set(own))}")
    sd = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])).reshape(own[k].shape).to(own[k].dtype) for k in own}
    model.load_state_dict(sd, strict=True)
    return model.eval()
