"""PyTorch mirrors of the C++ selective-SSM layers (lib/src/layers/mamba.cpp, mamba2.cpp, mamba_stack.cpp), for
training signal models and exporting them to the native file.

Parameter names and shapes are those of state-spaces/mamba `mamba_ssm/modules/mamba_simple.py` (Mamba) and
`mamba2.py` (Mamba2) and of transformers' MambaMixer/Mamba2Mixer, so state_dicts map 1:1. Pure PyTorch (CPU or any
device): Mamba's selective scan runs step by step over time; Mamba-2 uses the SSD chunked algorithm (intra-chunk
as matrix products, the state passed from chunk to chunk).

    from ssmtrain.mamba import MambaSignalModel, export_mamba_native, build_mamba_from_native
    model = MambaSignalModel(1, 1, d_model=64, n_layers=4, family="mamba2", d_state=32, head_dim=16)
    y = model(x)                                  # (B, L, d_input) -> (B, L, d_output), causal
    export_mamba_native(model.eval(), "m.safetensors", sample_rate=16000, name="my-mamba")
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .export import load_native, write_native


class RMSNorm(nn.Module):
    """y = weight * x / sqrt(mean(x^2) + eps) over the last axis (native `rmsnorm`)."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rms(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _inv_softplus(y):
    return y + torch.log(-torch.expm1(-y))


def _causal_conv(x, conv):
    """Depthwise causal conv1d over (B, L, C) with left padding K-1, then SiLU."""
    L = x.shape[1]
    return F.silu(conv(x.transpose(1, 2))[..., :L].transpose(1, 2))


class MambaMixer(nn.Module):
    """Mamba (S6) mixer, native `mamba`; with `bcdt_rms_eps` FalconMamba's (weightless RMS norms on dt, B, C)."""

    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", bias=False, conv_bias=True,
                 bcdt_rms_eps=None, dt_min=0.001, dt_max=0.1):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.bias, self.conv_bias, self.bcdt_rms_eps = bias, conv_bias, bcdt_rms_eps
        E, N, R = self.d_inner, d_state, self.dt_rank
        self.in_proj = nn.Linear(d_model, 2 * E, bias=bias)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        nn.init.uniform_(self.dt_proj.weight, -R ** -0.5, R ** -0.5)
        dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(_inv_softplus(dt))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(E, 1))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d_model, bias=bias)

    def native_config(self, name):
        c = {"type": "mamba", "name": name, "d_model": self.d_model, "d_inner": self.d_inner, "d_state": self.d_state,
             "d_conv": self.d_conv, "dt_rank": self.dt_rank, "bias": self.bias, "conv_bias": self.conv_bias}
        if self.bcdt_rms_eps is not None:
            c["bcdt_rms_eps"] = self.bcdt_rms_eps
        return c

    def forward(self, u):
        E, N, R = self.d_inner, self.d_state, self.dt_rank
        x, z = self.in_proj(u).split([E, E], dim=-1)
        x = _causal_conv(x, self.conv1d)
        dt, B, C = self.x_proj(x).split([R, N, N], dim=-1)
        if self.bcdt_rms_eps is not None:
            dt, B, C = (_rms(t, self.bcdt_rms_eps) for t in (dt, B, C))
        delta = F.softplus(self.dt_proj(dt))                     # (b, l, E)
        A = -torch.exp(self.A_log.float())                       # (E, N)
        h = u.new_zeros(u.shape[0], E, N)
        ys = []
        for t in range(u.shape[1]):
            d = delta[:, t, :, None]
            h = torch.exp(d * A) * h + d * B[:, t, None, :] * x[:, t, :, None]
            ys.append((h * C[:, t, None, :]).sum(-1))
        y = torch.stack(ys, 1) + self.D * x
        return self.out_proj(y * F.silu(z))


class Mamba2Mixer(nn.Module):
    """Mamba-2 (SSD) mixer, native `mamba2` (gated RMSNorm after the gate, per group, as mamba_ssm's default)."""

    def __init__(self, d_model, d_state=64, d_conv=4, expand=2, head_dim=64, n_groups=1, chunk_size=64,
                 dt_limit=(0.0, float("inf")), bias=False, conv_bias=True, norm_eps=1e-5, dt_min=0.001, dt_max=0.1):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        assert self.d_inner % head_dim == 0 and (self.d_inner // head_dim) % n_groups == 0
        self.head_dim, self.n_groups, self.n_heads = head_dim, n_groups, self.d_inner // head_dim
        self.chunk_size, self.dt_limit, self.bias, self.conv_bias, self.norm_eps = chunk_size, tuple(dt_limit), bias, conv_bias, norm_eps
        E, N, G, H = self.d_inner, d_state, n_groups, self.n_heads
        self.conv_dim = E + 2 * G * N
        self.in_proj = nn.Linear(d_model, E + self.conv_dim + H, bias=bias)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, padding=d_conv - 1, bias=conv_bias)
        dt = torch.exp(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(_inv_softplus(dt))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(H))
        self.norm = RMSNorm(E, eps=norm_eps)
        self.out_proj = nn.Linear(E, d_model, bias=bias)

    def native_config(self, name):
        hi = self.dt_limit[1]
        return {"type": "mamba2", "name": name, "d_model": self.d_model, "d_inner": self.d_inner, "d_state": self.d_state,
                "d_conv": self.d_conv, "head_dim": self.head_dim, "n_groups": self.n_groups, "bias": self.bias,
                "conv_bias": self.conv_bias, "norm_eps": self.norm_eps, "chunk_size": self.chunk_size,
                "dt_limit": [self.dt_limit[0], None if math.isinf(hi) else hi]}

    def forward(self, u):
        E, N, G, H, P = self.d_inner, self.d_state, self.n_groups, self.n_heads, self.head_dim
        b, L, _ = u.shape
        z, xbc, dt = self.in_proj(u).split([E, self.conv_dim, H], dim=-1)
        xbc = _causal_conv(xbc, self.conv1d)
        x, B, C = xbc.split([E, G * N, G * N], dim=-1)
        dt = F.softplus(dt + self.dt_bias).clamp(self.dt_limit[0], self.dt_limit[1])      # (b, L, H)
        A = -torch.exp(self.A_log.float())
        x = x.reshape(b, L, H, P)
        B = B.reshape(b, L, G, N).repeat_interleave(H // G, dim=2)
        C = C.reshape(b, L, G, N).repeat_interleave(H // G, dim=2)
        y = ssd_chunked(x * dt[..., None], dt * A, B, C, self.chunk_size) + self.D[:, None] * x
        y = y.reshape(b, L, E) * F.silu(z)
        gs = E // G
        y = _rms(y.reshape(b, L, G, gs), self.norm_eps).reshape(b, L, E) * self.norm.weight
        return self.out_proj(y)


def ssd_chunked(xdt, a, B, C, chunk):
    """y[t] = sum_{s<=t} C_t . B_s exp(sum_{s<k<=t} a_k) xdt_s, by chunks of `chunk` steps.
    xdt (b, L, h, p) = dt*x; a (b, L, h) = dt*A; B, C (b, L, h, n). Returns (b, L, h, p)."""
    b, L, h, p = xdt.shape
    pad = (-L) % chunk
    if pad:
        xdt, a, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (xdt, a, B, C))
    c = (L + pad) // chunk
    xdt, B, C = (t.reshape(b, c, chunk, h, -1) for t in (xdt, B, C))
    a = a.reshape(b, c, chunk, h)
    acum = torch.cumsum(a, dim=2)                                                  # (b, c, q, h)
    seg = acum[:, :, :, None, :] - acum[:, :, None, :, :]                          # (b, c, q_i, q_j, h)
    causal = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=a.device))
    Lmat = torch.exp(seg.masked_fill(~causal[None, None, :, :, None], -torch.inf))
    y_diag = torch.einsum("bcihn,bcjhn,bcijh,bcjhp->bcihp", C, B, Lmat, xdt)
    decay = torch.exp(acum[:, :, -1:, :] - acum)                                   # (b, c, q, h)
    chunk_states = torch.einsum("bcjhn,bcjh,bcjhp->bchpn", B, decay, xdt)
    s = xdt.new_zeros(b, h, p, B.shape[-1])
    starts = []
    for k in range(c):
        starts.append(s)
        s = torch.exp(acum[:, k, -1, :])[..., None, None] * s + chunk_states[:, k]
    starts = torch.stack(starts, 1)                                                # (b, c, h, p, n)
    y_off = torch.einsum("bcihn,bchpn,bcih->bcihp", C, starts, torch.exp(acum))
    return (y_diag + y_off).reshape(b, c * chunk, h, p)[:, :L]


class MambaSignalModel(nn.Module):
    """Linear encoder (signal channels -> d_model) -> n_layers residual blocks x + mixer(rmsnorm(x)) -> RMSNorm ->
    Linear decoder, per time step and causal: (B, L, d_input) -> (B, L, d_output). `family` "mamba" or "mamba2";
    the other keywords go to the mixer."""

    def __init__(self, d_input, d_output, d_model=64, n_layers=4, family="mamba", rms_eps=1e-5, **mixer_kw):
        super().__init__()
        self.family = family
        mixer = {"mamba": MambaMixer, "mamba2": Mamba2Mixer}[family]
        self.encoder = nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            block = nn.Module()
            block.norm = RMSNorm(d_model, eps=rms_eps)
            block.mixer = mixer(d_model, **mixer_kw)
            self.layers.append(block)
        self.norm_f = RMSNorm(d_model, eps=rms_eps)
        self.decoder = nn.Linear(d_model, d_output)

    def forward(self, x):
        x = self.encoder(x)
        for block in self.layers:
            x = x + block.mixer(block.norm(x))
        return self.decoder(self.norm_f(x))

    def native_layers(self):
        def norm(n, name):
            return {"type": "rmsnorm", "name": name, "dim": n.weight.shape[0], "eps": n.eps}
        layers = [{"type": "linear", "name": "encoder", "in": self.encoder.in_features, "out": self.encoder.out_features}]
        for i, blk in enumerate(self.layers):
            layers.append({"type": "residual", "name": f"layers.{i}", "prenorm": True,
                           "body": [norm(blk.norm, f"layers.{i}.norm"), blk.mixer.native_config(f"layers.{i}.mixer")]})
        layers.append(norm(self.norm_f, "norm_f"))
        layers.append({"type": "linear", "name": "decoder", "in": self.decoder.in_features, "out": self.decoder.out_features})
        return layers


def export_mamba_native(model, path, sample_rate, name, description="", dtype=torch.float32):
    """Write a MambaSignalModel as a native file (docs/model-format.md). Returns the config dict."""
    sd = {k: v for k, v in model.state_dict().items()}
    return write_native(path, model.native_layers(), sd, sample_rate, name, description, dtype)


def build_mamba_from_native(path):
    """Rebuild a MambaSignalModel from a native file written by export_mamba_native."""
    config, arrays = load_native(path)
    layers = config["layers"]
    enc, res, dec = layers[0], layers[1:-2], layers[-1]
    if enc["type"] != "linear" or dec["type"] != "linear" or not res or any(r["type"] != "residual" for r in res):
        raise ValueError("expected linear, residual..., rmsnorm, linear")
    m = res[0]["body"][1]
    kw = dict(d_state=m["d_state"], d_conv=m["d_conv"], expand=m["d_inner"] // m["d_model"], bias=m.get("bias", False),
              conv_bias=m.get("conv_bias", True))
    if m["type"] == "mamba":
        kw.update(dt_rank=m["dt_rank"], bcdt_rms_eps=m.get("bcdt_rms_eps"))
    else:
        lim = m.get("dt_limit", [0.0, None])
        kw.update(head_dim=m["head_dim"], n_groups=m.get("n_groups", 1), chunk_size=m.get("chunk_size", 256),
                  norm_eps=m.get("norm_eps", 1e-5), dt_limit=(lim[0], float("inf") if lim[1] is None else lim[1]))
    model = MambaSignalModel(enc["in"], dec["out"], d_model=m["d_model"], n_layers=len(res), family=m["type"],
                             rms_eps=layers[-2].get("eps", 1e-5), **kw)
    own = model.state_dict()
    if set(own) != set(arrays):
        raise ValueError(f"tensor names differ: missing {sorted(set(own) - set(arrays))}, surplus {sorted(set(arrays) - set(own))}")
    model.load_state_dict({k: torch.as_tensor(arrays[k]).reshape(own[k].shape).to(own[k].dtype) for k in own})
    return model.eval()
