#!/usr/bin/env python3
"""Golden files for the `s5` layer from the S5 reference code itself (lindermanlab/S5, JAX/flax), see
docs/families-a.md.

    git clone https://github.com/lindermanlab/S5 third_party/S5
    git -C third_party/S5 checkout 3c18fdb6b06414da35e77b94b9cd855f6a95ef17
    pip install "jax[cpu]" flax torch safetensors numpy     # numpy >= 2 for current jax (a venv is fine)
    python tests/golden/make_s5_golden.py [--repo third_party/S5] [--out-dir tests/golden/lti_a]

Imported from the checkout (nothing copied here): `s5/ssm.py` (`init_S5SSM`, `S5SSM`), `s5/ssm_init.py`
(`make_DPLR_HiPPO`), `s5/seq_model.py` (`StackedEncoderModel`), `s5/layers.py`. The one patch: ssm.py annotates
fields with `jax.numpy.DeviceArray`, which current jax no longer has; it is aliased to `jax.Array` before import
(annotations only). The HiPPO block-diagonal initialisation is the one of `s5/train.py` (lines 76-90), rebuilt from
the reference functions with run_train.py's defaults (ssm_size_base 256, blocks 8, C_init trunc_standard_normal,
zoh, conj_sym, dt 0.001-0.1, activation half_glu1, prenorm, batchnorm).
Cases (<case>.model.safetensors = the native model, <case>.io.safetensors = input, output = reference float32,
output_f64 = reference on the same weights in float64):
- s5_layer_zoh / s5_layer_bilinear: one `S5SSM` (H=8, ssm_size 16, 2 blocks, conj_sym -> P=8), T=400;
  s5_layer_noconj: conj_sym=False, C_init complex_normal, clip_eigs=True (P=16).
- s5_stack: `StackedEncoderModel` with the defaults above, n_layers=4, d_model=128 (P=128), d_input=1, T=128,
  inference mode; weights rounded to bfloat16 and stored as BF16 (the reference runs on the same values).
- s5_small_half_glu2 (layernorm, postnorm), s5_small_full_glu (batchnorm, prenorm), s5_small_gelu (layernorm,
  prenorm): 2 layers, H=8, P=8, T=200, float32.
  The S5 tensors and the SequenceLayer's Dense modules keep their flax names and layouts (`layers_0.seq.Lambda_re`,
  `layers_0.out2.kernel` [in, out], ...): the `s5` layer with `activation` and `dense_prefix` loads them as saved.
  The encoder Dense becomes a `linear` (kernel transposed), norms are renamed (scale -> weight, batch_stats mean/var
  -> running_mean/running_var); flax LayerNorm's eps is 1e-6.
Tolerance in the C++ test: max|ours - ref| <= 1e-4 * max(1, RMS(ref)).
"""
import argparse
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from jax.scipy.linalg import block_diag  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from make_lru_golden import commit_of, to64, write_case  # noqa: E402


def hippo_init(ref_init, ssm_size, blocks, conj_sym):
    """s5/train.py's initialisation of Lambda, V, Vinv (block-diagonal HiPPO-LegS), with the reference functions."""
    block_size = ssm_size // blocks
    Lambda, _, _, V, _ = ref_init.make_DPLR_HiPPO(block_size)
    if conj_sym:
        block_size //= 2
        ssm_size //= 2
    Lambda = Lambda[:block_size]
    V = V[:, :block_size]
    Vc = V.conj().T
    Lambda = (Lambda * jnp.ones((blocks, block_size))).ravel()
    return ssm_size, Lambda, block_diag(*([V] * blocks)), block_diag(*([Vc] * blocks))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.join(ROOT, "third_party", "S5"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "lti_a"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    jnp.DeviceArray = jax.Array  # annotation-only alias for ssm.py (removed from jax)
    sys.path.insert(0, args.repo)
    from s5 import ssm as ref_ssm, ssm_init as ref_init, seq_model as ref_seq  # noqa: E402
    commit = commit_of(args.repo)
    meta = {"reference": "lindermanlab/S5 s5/ssm.py", "commit": commit, "jax": jax.__version__,
            "tolerance": "max|ours-ref| <= 1e-4*max(1,RMS(ref))"}
    rng = np.random.default_rng(7)
    summary = {"meta": meta}

    def make_ssm(H, ssm_size, blocks, conj_sym, C_init, disc, clip):
        P, Lambda, V, Vinv = hippo_init(ref_init, ssm_size, blocks, conj_sym)
        with jax.default_matmul_precision("highest"):
            fn = ref_ssm.init_S5SSM(H=H, P=P, Lambda_re_init=np.asarray(Lambda.real, np.float32),
                                    Lambda_im_init=np.asarray(Lambda.imag, np.float32), V=V, Vinv=Vinv,
                                    C_init=C_init, discretization=disc, dt_min=0.001, dt_max=0.1,
                                    conj_sym=conj_sym, clip_eigs=clip, bidirectional=False)
        return P, fn

    # ---- single S5SSM layers
    for case, conj, cinit, disc, clip in [("s5_layer_zoh", True, "trunc_standard_normal", "zoh", False),
                                          ("s5_layer_bilinear", True, "lecun_normal", "bilinear", False),
                                          ("s5_layer_noconj", False, "complex_normal", "zoh", True)]:
        H, T = 8, 400
        P, fn = make_ssm(H, 16, 2, conj, cinit, disc, clip)
        mod = fn()
        x = rng.standard_normal((T, H)).astype(np.float32)
        params = mod.init(jax.random.PRNGKey(3), jnp.asarray(x))
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, np.float32)), params)
        # move the HiPPO eigenvalues a little so every state has its own decay (the init repeats blocks)
        p = dict(params["params"])
        p["Lambda_re"] = jnp.asarray(np.asarray(p["Lambda_re"]) * np.exp(rng.normal(0, 0.3, P)), jnp.float32)
        p["Lambda_im"] = jnp.asarray(np.asarray(p["Lambda_im"]) + rng.normal(0, 0.3, P), jnp.float32)
        params = {"params": p}
        y32 = np.asarray(mod.apply(params, jnp.asarray(x)))
        y64 = np.asarray(mod.apply(to64(params), jnp.asarray(x, jnp.float64)))
        tensors = {f"s5.{k}": np.asarray(v) for k, v in p.items()}
        config = {"format": "ssmstream", "version": 1, "name": case,
                  "description": f"golden: lindermanlab/S5 S5SSM(H={H}, P={P}, C_init={cinit}, {disc}, "
                                 f"conj_sym={conj}, clip_eigs={clip}) @ {commit}", "sample_rate": 0,
                  "layers": [{"type": "s5", "name": "s5", "d_model": H, "d_state": P, "discretization": disc,
                              "conj_sym": conj, "clip_eigs": clip}]}
        write_case(args.out_dir, case, config, tensors, x, y32, y64, meta)
        summary[case] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}

    def rnd(a):
        return np.asarray(torch.from_numpy(np.asarray(a, np.float32)).to(torch.bfloat16).to(torch.float32))

    def stack_case(case, H, L, ssm_size, blocks, activation, prenorm, batchnorm, T, bf16):
        P, fn = make_ssm(H, ssm_size, blocks, True, "trunc_standard_normal", "zoh", False)
        model = ref_seq.StackedEncoderModel(ssm=fn, d_model=H, n_layers=L, activation=activation, dropout=0.0,
                                            training=False, prenorm=prenorm, batchnorm=batchnorm, bn_momentum=0.95)
        x = rng.standard_normal((T, 1)).astype(np.float32)
        variables = model.init({"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}, jnp.asarray(x),
                               None)
        variables = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), variables)
        variables = {k: dict(v) for k, v in variables.items()}
        variables.setdefault("batch_stats", {})
        prm, st = variables["params"], variables["batch_stats"]
        prm["encoder"] = {"kernel": prm["encoder"]["kernel"], "bias": rng.normal(0, 0.2, H)}
        for i in range(L):
            lp = dict(prm[f"layers_{i}"])
            for o in ("out1", "out2"):
                if o in lp:
                    lp[o] = {"kernel": lp[o]["kernel"], "bias": rng.normal(0, 0.1, H)}
            lp["norm"] = {"scale": 1 + rng.normal(0, 0.2, H), "bias": rng.normal(0, 0.2, H)}
            prm[f"layers_{i}"] = lp
            if batchnorm:
                st[f"layers_{i}"] = {"norm": {"mean": rng.normal(0, 0.3, H), "var": rng.uniform(0.5, 1.5, H)}}
        if not batchnorm:
            del variables["batch_stats"]
        cast = rnd if bf16 else (lambda a: np.asarray(a, np.float32))
        variables = jax.tree_util.tree_map(lambda a: jnp.asarray(cast(a)), variables)
        y32 = np.asarray(model.apply(variables, jnp.asarray(x), None))
        y64 = np.asarray(model.apply(to64(variables), jnp.asarray(x, jnp.float64), None))
        prm = variables["params"]
        tensors = {"encoder.weight": np.asarray(prm["encoder"]["kernel"]).T, "encoder.bias": prm["encoder"]["bias"]}
        layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
        for i in range(L):
            lp = prm[f"layers_{i}"]
            for k, v in lp["seq"].items():
                tensors[f"layers_{i}.seq.{k}"] = v
            for o in ("out1", "out2"):  # flax Dense modules, as saved
                if o in lp:
                    tensors[f"layers_{i}.{o}.kernel"] = lp[o]["kernel"]
                    tensors[f"layers_{i}.{o}.bias"] = lp[o]["bias"]
            tensors[f"layers_{i}.norm.weight"] = lp["norm"]["scale"]
            tensors[f"layers_{i}.norm.bias"] = lp["norm"]["bias"]
            if batchnorm:
                sp = variables["batch_stats"][f"layers_{i}"]
                tensors[f"layers_{i}.norm.running_mean"] = sp["norm"]["mean"]
                tensors[f"layers_{i}.norm.running_var"] = sp["norm"]["var"]
                norm = {"type": "batchnorm", "name": f"layers_{i}.norm", "dim": H, "eps": 1e-5}
            else:
                norm = {"type": "layernorm", "name": f"layers_{i}.norm", "dim": H, "eps": 1e-6}
            s5 = {"type": "s5", "name": f"layers_{i}.seq", "d_model": H, "d_state": P, "discretization": "zoh",
                  "conj_sym": True, "activation": activation}
            if activation != "gelu":
                s5["dense_prefix"] = f"layers_{i}"
            layers.append({"type": "residual", "prenorm": prenorm, "norm": norm, "body": [s5]})
        config = {"format": "ssmstream", "version": 1, "name": case,
                  "description": f"golden: lindermanlab/S5 StackedEncoderModel(n_layers={L}, d_model={H}, P={P}, "
                                 f"{activation}, prenorm={prenorm}, batchnorm={batchnorm}) @ {commit}",
                  "sample_rate": 0, "layers": layers}
        write_case(args.out_dir, case, config, tensors, x, y32, None if bf16 else y64, meta, bf16=bf16)
        summary[case] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}

    # run_train.py's defaults (6 layers there; 4 here keeps the files under 1 MB)
    stack_case("s5_stack", 128, 4, 256, 8, "half_glu1", True, True, 128, True)
    # the other SequenceLayer activations and norms, small
    stack_case("s5_small_half_glu2", 8, 2, 16, 2, "half_glu2", False, False, 200, False)
    stack_case("s5_small_full_glu", 8, 2, 16, 2, "full_glu", True, True, 200, False)
    stack_case("s5_small_gelu", 8, 2, 16, 2, "gelu", True, False, 200, False)
    with open(os.path.join(args.out_dir, "s5_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
