"""dlexp's Optuna sweeper for Hydra: `dlexp -m hparams_search=lenet_optuna` (README: "Hyperparameter search").

`hydra_plugins` is a namespace package (no `hydra_plugins/__init__.py`): Hydra finds plugins by
scanning it, and other installed plugins live in the same namespace.
"""
