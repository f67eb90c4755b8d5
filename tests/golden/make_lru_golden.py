#!/usr/bin/env python3
"""Golden files for the `lru` layer from the LRU reference code itself (minimal-LRU, JAX/flax), see docs/families-a.md.

    git clone https://github.com/NicolasZucchet/minimal-LRU third_party/minimal-LRU
    git -C third_party/minimal-LRU checkout bbd71b1104c399ec0d13819527d791949e66f599
    pip install "jax[cpu]" flax torch safetensors numpy
    python tests/golden/make_lru_golden.py [--repo third_party/minimal-LRU] [--out-dir tests/golden/lti_a]

Only `lru/model.py` of the checkout is imported (`LRU`, `StackedEncoderModel`); nothing of it is copied here.
Cases (files <case>.model.safetensors = the native model, <case>.io.safetensors = input [T, Cin] F32, output
[T, Cout] F32 = the reference in float32, output_f64 = the reference run on the same weights in float64):
- lru_layer: `LRU(d_hidden=32, d_model=8)` with its default r_min=0, r_max=1, max_phase=6.28 (ring init), T=1000.
- lru_stack: `StackedEncoderModel` with run_train.py's defaults (n_layers=4, d_hidden=128, r_min=0, r_max=1,
  norm='batch', prenorm=True) at d_model=128, d_hidden=112 (defaults 256, 128: smaller keeps the files under 1 MB), inference mode, d_input=1,
  T=128; weights rounded to bfloat16 and stored as BF16 (the reference runs on the same rounded values, so the
  rounding is part of the checkpoint, not of the error). The LRU and its SequenceLayer's Dense modules keep their
  flax names and layouts (`layers_0.seq.nu_log`, `layers_0.out1.kernel` [in, out], ...): the `lru` layer with
  `activation: full_glu` loads them as saved. The encoder Dense becomes a `linear` (kernel transposed) and BatchNorm's
  scale/bias/batch_stats become batchnorm weight/bias/running_mean/running_var (renames only).
Tolerance in the C++ test: max|ours - ref| <= 1e-4 * max(1, RMS(ref)).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_reference(repo):
    spec = importlib.util.spec_from_file_location("lru_reference_model", os.path.join(repo, "lru", "model.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def commit_of(repo):
    try:
        return subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def tree_map(f, t):
    return jax.tree_util.tree_map(f, t)


def to64(t):
    return tree_map(lambda a: jnp.asarray(a, jnp.float64), t)


def write_case(out_dir, case, config, tensors, x, y32, y64, meta, bf16=False):
    dt = torch.bfloat16 if bf16 else torch.float32
    tens = {k: torch.from_numpy(np.ascontiguousarray(np.asarray(v, np.float32))).to(dt) for k, v in tensors.items()}
    save_file(tens, os.path.join(out_dir, case + ".model.safetensors"), metadata={"ssmstream": json.dumps(config)})
    io = {"input": torch.from_numpy(np.asarray(x, np.float32)), "output": torch.from_numpy(np.asarray(y32, np.float32))}
    if y64 is not None:
        io["output_f64"] = torch.from_numpy(np.asarray(y64, np.float64))
    save_file(io, os.path.join(out_dir, case + ".io.safetensors"), metadata={"golden": json.dumps(meta)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.join(ROOT, "third_party", "minimal-LRU"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "lti_a"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    ref = load_reference(args.repo)
    commit = commit_of(args.repo)
    meta = {"reference": "NicolasZucchet/minimal-LRU lru/model.py", "commit": commit, "jax": jax.__version__,
            "tolerance": "max|ours-ref| <= 1e-4*max(1,RMS(ref))"}
    rng = np.random.default_rng(5)
    summary = {}

    # ---- one LRU module, default hyper-parameters
    H, N, T = 8, 32, 1000
    mod = ref.LRU(d_hidden=N, d_model=H)
    x = rng.standard_normal((T, H)).astype(np.float32)
    params = mod.init(jax.random.PRNGKey(0), jnp.asarray(x))
    y32 = np.asarray(mod.apply(params, jnp.asarray(x)))
    y64 = np.asarray(mod.apply(to64(params), jnp.asarray(x, jnp.float64)))
    p = params["params"]
    tensors = {f"lru.{k}": np.asarray(v) for k, v in p.items()}
    config = {"format": "ssmstream", "version": 1, "name": "lru_layer",
              "description": f"golden: minimal-LRU LRU(d_hidden={N}, d_model={H}) @ {commit}", "sample_rate": 0,
              "layers": [{"type": "lru", "name": "lru", "d_model": H, "d_hidden": N}]}
    write_case(args.out_dir, "lru_layer", config, tensors, x, y32, y64, meta)
    summary["lru_layer"] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}

    # ---- the stacked encoder with run_train.py's defaults
    H, N, T, L = 128, 112, 128, 4
    lru = lambda: ref.LRU(d_hidden=N, d_model=H, r_min=0.0, r_max=1.0)  # noqa: E731
    model = ref.StackedEncoderModel(lru=lru, d_model=H, n_layers=L, dropout=0.1, training=False, norm="batch",
                                    prenorm=True)
    x = rng.standard_normal((T, 1)).astype(np.float32)
    variables = model.init({"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, jnp.asarray(x))
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a), variables)
    variables = {k: dict(v) for k, v in variables.items()}

    def rnd(a):
        return np.asarray(torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).to(torch.float32))

    # move the zero/one inits (biases, norm affine, running statistics) off their trivial values
    prm, st = variables["params"], variables["batch_stats"]
    prm["encoder"] = {"kernel": prm["encoder"]["kernel"], "bias": rng.normal(0, 0.2, H)}
    for i in range(L):
        lp = dict(prm[f"layers_{i}"])
        for o in ("out1", "out2"):
            lp[o] = {"kernel": lp[o]["kernel"], "bias": rng.normal(0, 0.1, H)}
        lp["normalization"] = {"scale": 1 + rng.normal(0, 0.2, H), "bias": rng.normal(0, 0.2, H)}
        prm[f"layers_{i}"] = lp
        st[f"layers_{i}"] = {"normalization": {"mean": rng.normal(0, 0.3, H), "var": rng.uniform(0.5, 1.5, H)}}
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(rnd(a)), variables)
    y32 = np.asarray(model.apply(variables, jnp.asarray(x)))
    y64 = np.asarray(model.apply(to64(variables), jnp.asarray(x, jnp.float64)))
    prm, st = variables["params"], variables["batch_stats"]
    tensors = {"encoder.weight": np.asarray(prm["encoder"]["kernel"]).T, "encoder.bias": prm["encoder"]["bias"]}
    layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
    for i in range(L):
        lp, sp = prm[f"layers_{i}"], st[f"layers_{i}"]
        for k, v in lp["seq"].items():
            tensors[f"layers_{i}.seq.{k}"] = v
        for o in ("out1", "out2"):  # flax Dense modules, as saved
            tensors[f"layers_{i}.{o}.kernel"] = lp[o]["kernel"]
            tensors[f"layers_{i}.{o}.bias"] = lp[o]["bias"]
        tensors[f"layers_{i}.normalization.weight"] = lp["normalization"]["scale"]
        tensors[f"layers_{i}.normalization.bias"] = lp["normalization"]["bias"]
        tensors[f"layers_{i}.normalization.running_mean"] = sp["normalization"]["mean"]
        tensors[f"layers_{i}.normalization.running_var"] = sp["normalization"]["var"]
        layers.append({"type": "residual", "prenorm": True,
                       "norm": {"type": "batchnorm", "name": f"layers_{i}.normalization", "dim": H, "eps": 1e-5},
                       "body": [{"type": "lru", "name": f"layers_{i}.seq", "d_model": H, "d_hidden": N,
                                 "activation": "full_glu", "dense_prefix": f"layers_{i}"}]})
    config = {"format": "ssmstream", "version": 1, "name": "lru_stack",
              "description": f"golden: minimal-LRU StackedEncoderModel(n_layers={L}, d_model={H}, d_hidden={N}, "
                             f"norm=batch, prenorm=True) @ {commit}", "sample_rate": 0, "layers": layers}
    write_case(args.out_dir, "lru_stack", config, tensors, x, y32, None, meta, bf16=True)
    summary["lru_stack"] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}
    summary["meta"] = meta
    with open(os.path.join(args.out_dir, "lru_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
