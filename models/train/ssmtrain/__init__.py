"""ssmtrain: PyTorch mirror of the ssmstream layers, native-format export and import of state-spaces/s4 S4D."""
from .layers import S4D, S4DKernel, S4DModel  # noqa: F401
