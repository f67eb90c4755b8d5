"""PyTorch modules that mirror the ssmstream C++ layers (see docs/model-format.md).

Parameter names and initialisation follow the S4D layer of state-spaces/s4 (`models/s4/s4d.py`) and the
`S4Model` backbone of its `example.py`, so a state_dict of theirs loads here 1:1 (see import_s4d.py).
Differences from the reference backbone: the decoder runs per time step (no mean pooling), so the model is a
causal sequence-to-sequence map (B, L, d_input) -> (B, L, d_output).
"""

import math

import torch
import torch.nn as nn

DISCS = ("zoh", "bilinear")
ACTIVATIONS = ("gelu", "none")
OUTPUTS = ("glu", "linear", "none")


class S4DKernel(nn.Module):
    """Diagonal SSM kernel. Parameters: log_dt [H], log_A_real [H, N/2], A_imag [H, N/2], C [H, N/2, 2]
    (view_as_real of a complex tensor) and, with `use_B`, B [H, N/2, 2] (otherwise B = 1)."""

    def __init__(self, d_model, N=64, dt_min=0.001, dt_max=0.1, lr=None, disc="zoh", use_B=False):
        super().__init__()
        if disc not in DISCS:
            raise ValueError(f"disc must be one of {DISCS}, got {disc!r}")
        if N % 2:
            raise ValueError("d_state must be even")
        H = d_model
        self.disc = disc
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(H, N // 2, dtype=torch.cfloat)
        self.C = nn.Parameter(torch.view_as_real(C))
        self.register("log_dt", log_dt, lr)
        log_A_real = torch.log(0.5 * torch.ones(H, N // 2))
        A_imag = math.pi * torch.arange(N // 2, dtype=torch.float32).repeat(H, 1)
        self.register("log_A_real", log_A_real, lr)
        self.register("A_imag", A_imag, lr)
        if use_B:
            B = torch.zeros(H, N // 2, 2)
            B[..., 0] = 1.0
            self.register("B", B, lr)
        else:
            self.B = None

    def register(self, name, tensor, lr=None):
        """Like the reference: lr == 0 makes a buffer; otherwise a parameter with weight decay 0 (and lr)."""
        if lr == 0.0:
            self.register_buffer(name, tensor)
        else:
            self.register_parameter(name, nn.Parameter(tensor))
            optim = {"weight_decay": 0.0}
            if lr is not None:
                optim["lr"] = lr
            setattr(getattr(self, name), "_optim", optim)

    def discretize(self, dtype=None):
        """Returns (dA, dB, C) as complex tensors [H, N/2]: x_t = dA x_{t-1} + dB u_t, y = 2 Re(C x)."""
        params = [self.log_dt, self.log_A_real, self.A_imag, self.C]
        if dtype is not None:
            params = [p.to(dtype) for p in params]
        log_dt, log_A_real, A_imag, C = params
        dt = torch.exp(log_dt).unsqueeze(-1)
        A = -torch.exp(log_A_real) + 1j * A_imag
        C = torch.view_as_complex(C.contiguous())
        dtA = A * dt
        if self.disc == "zoh":
            dA = torch.exp(dtA)
            dB = (dA - 1.0) / A
        else:
            dA = (1.0 + dtA / 2) / (1.0 - dtA / 2)
            dB = dt / (1.0 - dtA / 2)
        if self.B is not None:
            B = self.B if dtype is None else self.B.to(dtype)
            dB = dB * torch.view_as_complex(B.contiguous())
        return dA, dB, C

    def forward(self, L):
        """Convolution kernel K [H, L], K_k = 2 Re(sum_n C_n dB_n dA_n^k)."""
        dA, dB, C = self.discretize()
        k = torch.arange(L, device=dA.device)
        if self.disc == "zoh":
            # powers as exp(k * dt * A), like the reference
            dt = torch.exp(self.log_dt).unsqueeze(-1)
            A = -torch.exp(self.log_A_real) + 1j * self.A_imag
            V = torch.exp((A * dt).unsqueeze(-1) * k)
        else:
            V = torch.exp(torch.log(dA).unsqueeze(-1) * k)
        return 2 * torch.einsum("hn,hnl->hl", C * dB, V).real


class S4D(nn.Module):
    """S4D layer over (B, H, L): y = act(K * u + D u), then the output transform (1x1 conv + GLU, 1x1 conv, or
    nothing). `forward` uses an FFT convolution (like the reference), `forward_recurrent` the recurrence."""

    def __init__(self, d_model, d_state=64, disc="zoh", activation="gelu", output="glu", dropout=0.0,
                 dt_min=0.001, dt_max=0.1, lr=None, use_B=False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.h = d_model
        self.n = d_state
        self.disc = disc
        self.activation_name = activation
        self.output_name = output
        self.D = nn.Parameter(torch.randn(self.h))
        self.kernel = S4DKernel(self.h, N=self.n, dt_min=dt_min, dt_max=dt_max, lr=lr, disc=disc, use_B=use_B)
        self.activation = nn.GELU() if activation == "gelu" else nn.Identity()
        # channel dropout with the mask tied over time, like the reference DropoutNd
        self.dropout = nn.Dropout1d(dropout) if dropout > 0.0 else nn.Identity()
        if output == "glu":
            self.output_linear = nn.Sequential(nn.Conv1d(self.h, 2 * self.h, kernel_size=1), nn.GLU(dim=-2))
        elif output == "linear":
            self.output_linear = nn.Sequential(nn.Conv1d(self.h, self.h, kernel_size=1))
        else:
            self.output_linear = nn.Identity()

    def _post(self, y):
        return self.output_linear(self.dropout(self.activation(y)))

    def forward(self, u):
        """u: (B, H, L) -> (B, H, L)."""
        L = u.size(-1)
        k = self.kernel(L=L)
        k_f = torch.fft.rfft(k, n=2 * L)
        u_f = torch.fft.rfft(u, n=2 * L)
        y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]
        y = y + u * self.D.unsqueeze(-1)
        return self._post(y)

    def forward_recurrent(self, u, state=None, return_state=False):
        """Step-by-step recurrence in float64 (complex128 states). u: (B, H, L). Returns float64 output
        (and the final state [B, H, N/2] if return_state)."""
        u = u.to(torch.float64)
        dA, dB, C = self.kernel.discretize(torch.float64)
        x = torch.zeros(u.size(0), self.h, self.n // 2, dtype=torch.complex128) if state is None else state
        ys = []
        for t in range(u.size(-1)):
            x = dA * x + dB * u[:, :, t, None]
            ys.append(2 * torch.einsum("hn,bhn->bh", C, x).real)
        y = torch.stack(ys, dim=-1) + u * self.D.to(torch.float64).unsqueeze(-1)
        y = self.activation(y)
        if self.output_name != "none":
            conv = self.output_linear[0]
            y = torch.nn.functional.conv1d(y, conv.weight.to(torch.float64), conv.bias.to(torch.float64))
            if self.output_name == "glu":
                y = torch.nn.functional.glu(y, dim=-2)
        return (y, x) if return_state else y


class S4DModel(nn.Module):
    """Linear encoder -> n_layers residual S4D blocks (structure of the reference example.py S4Model) ->
    Linear decoder applied per time step. Input (B, L, d_input), output (B, L, d_output); causal."""

    def __init__(self, d_input, d_output, d_model=64, n_layers=4, d_state=64, prenorm=False, dropout=0.0,
                 disc="zoh", activation="gelu", output="glu", lr=None, use_B=False):
        super().__init__()
        self.prenorm = prenorm
        self.d_input, self.d_output, self.d_model = d_input, d_output, d_model
        self.encoder = nn.Linear(d_input, d_model)
        self.s4_layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for _ in range(n_layers):
            self.s4_layers.append(S4D(d_model, d_state=d_state, dropout=dropout, disc=disc, activation=activation,
                                      output=output, lr=lr, use_B=use_B))
            self.norms.append(nn.LayerNorm(d_model))
            self.dropouts.append(nn.Dropout1d(dropout) if dropout > 0.0 else nn.Identity())
        self.decoder = nn.Linear(d_model, d_output)

    def _run(self, x, layer_fn, norm_fn, enc, dec):
        x = enc(x).transpose(-1, -2)  # (B, H, L)
        for layer, norm, dropout in zip(self.s4_layers, self.norms, self.dropouts):
            z = x
            if self.prenorm:
                z = norm_fn(norm, z.transpose(-1, -2)).transpose(-1, -2)
            z = dropout(layer_fn(layer, z))
            x = z + x
            if not self.prenorm:
                x = norm_fn(norm, x.transpose(-1, -2)).transpose(-1, -2)
        return dec(x.transpose(-1, -2))

    def forward(self, x):
        return self._run(x, lambda layer, z: layer(z), lambda norm, z: norm(z), self.encoder, self.decoder)

    def forward_recurrent(self, x):
        """Same model with every S4D layer run as a float64 recurrence (everything else in float64 too)."""
        F = torch.nn.functional
        d = torch.float64

        def lin(m):
            return lambda v: F.linear(v, m.weight.to(d), m.bias.to(d))

        def norm_fn(norm, z):
            return F.layer_norm(z, norm.normalized_shape, norm.weight.to(d), norm.bias.to(d), norm.eps)

        return self._run(x.to(d), lambda layer, z: layer.forward_recurrent(z), norm_fn,
                         lin(self.encoder), lin(self.decoder))
