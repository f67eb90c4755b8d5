"""Load the authors' code from a local checkout of state-spaces/s4 (nothing of it is copied here).

- `s4d_module(repo)`: their `models/s4/s4d.py` (S4D, S4DKernel).
- `s4_module(repo)`: their full `models/s4/s4.py` (SSMKernelDiag, FFTConv, S4Block). It imports
  `pytorch_lightning.utilities.rank_zero_only` only to decorate its logger; when pytorch_lightning is not installed a
  stub module with an identity `rank_zero_only` is put in `sys.modules` (no numerics involved).
- `s4model_class(repo, S4D=None, lr=0.001)`: the `class S4Model` of their `example.py`, extracted with `ast` (the
  file parses arguments and downloads data sets at import) and executed with their S4D in scope. The one statement
  `x = x.mean(dim=1)` (mean pooling over time) is removed from `forward`, so the decoder runs per time step and
  forward maps (B, L, d_input) -> (B, L, d_output).
"""

import ast
import functools
import os
import subprocess
import sys
import types


def default_repo():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("S4_REPO", os.path.join(here, "..", "..", "..", "third_party", "s4"))


def repo_ok(repo):
    return repo is not None and all(os.path.isfile(os.path.join(repo, p))
                                    for p in ("models/s4/s4d.py", "models/s4/s4.py", "example.py"))


def repo_commit(repo):
    try:
        return subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _on_path(repo):
    repo = os.path.abspath(repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)


def s4d_module(repo):
    _on_path(repo)
    import importlib
    return importlib.import_module("models.s4.s4d")


def s4_module(repo):
    _on_path(repo)
    try:
        import pytorch_lightning.utilities  # noqa: F401
    except ImportError:
        pl = types.ModuleType("pytorch_lightning")
        ut = types.ModuleType("pytorch_lightning.utilities")
        ut.rank_zero_only = lambda fn: fn
        pl.utilities = ut
        sys.modules.setdefault("pytorch_lightning", pl)
        sys.modules.setdefault("pytorch_lightning.utilities", ut)
    import importlib
    import logging
    logging.getLogger("models.s4.s4").setLevel(logging.ERROR)  # CUDA-extension / pykeops fallback warnings
    return importlib.import_module("models.s4.s4")


class _DropPooling(ast.NodeTransformer):
    removed = 0

    def visit_FunctionDef(self, node):
        if node.name != "forward":
            return node
        body = []
        for st in node.body:
            if (isinstance(st, ast.Assign) and ast.unparse(st).replace(" ", "") == "x=x.mean(dim=1)"):
                self.removed += 1
                continue
            body.append(st)
        node.body = body
        return node


def s4model_class(repo, S4D=None, lr=0.001, d_state=None):
    """Their S4Model class (without the mean pooling). `S4D` defaults to their s4d.S4D; `d_state` (their S4Model
    has no such argument and uses S4D's default 64) is bound with functools.partial when given; `lr` stands in for
    the script's `args.lr`."""
    import torch
    import torch.nn as nn
    with open(os.path.join(repo, "example.py")) as f:
        tree = ast.parse(f.read())
    cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "S4Model"]
    if len(cls) != 1:
        raise RuntimeError("class S4Model not found in example.py")
    tr = _DropPooling()
    cls = tr.visit(cls[0])
    if tr.removed != 1:
        raise RuntimeError("expected exactly one `x = x.mean(dim=1)` in S4Model.forward")
    mod = ast.fix_missing_locations(ast.Module(body=[cls], type_ignores=[]))
    if S4D is None:
        S4D = s4d_module(repo).S4D
    if d_state is not None:
        S4D = functools.partial(S4D, d_state=d_state)
    ns = {"torch": torch, "nn": nn, "S4D": S4D, "dropout_fn": nn.Dropout1d,
          "args": types.SimpleNamespace(lr=lr)}
    exec(compile(mod, os.path.join(repo, "example.py"), "exec"), ns)
    return ns["S4Model"]
