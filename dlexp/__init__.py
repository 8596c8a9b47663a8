"""dlexp: a config-driven deep-learning experiment runner for PyTorch.

Importing this package is cheap: nothing here imports torch.
"""

__version__ = "0.1.0"
