"""One vocabulary of names: the valid choices that the schema checks and the code builds.

Torch-free, so the checks before torch is imported and the models and data sets read the same
lists.
"""

VISION_DATASETS = ("mnist_sample", "mnist", "fashion_mnist", "kmnist", "cifar10")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu")
INITS = ("default", "xavier", "kaiming", "normal")
POOLINGS = ("max", "avg")

# text tables by their suffix (data.format=auto)
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}

# What a run of each family is judged by, most important first (the HParams table's metric
# columns, after best/<monitor>), and which metrics are drawn together: group → metrics (one
# chart each in TensorBoard's Custom Scalars; the group its Time Series shows them under). A
# folder may mix families: every run names the others' metrics too, so none is left out.
METRICS = {
    "classify": ("val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss"),
    "gan": (
        "eval/frechet_distance",
        "eval/confidence_entropy",
        "eval/coverage_entropy",
        "train/g_loss",
        "train/d_loss",
        "train/d_real",
        "train/d_fake",
    ),
    "vae": (
        "val/neg_elbo",
        "val/recon",
        "val/kl",
        "eval/frechet_distance",
        "eval/probe_acc",
        "test/neg_elbo",
        "test/recon",
        "train/neg_elbo",
        "train/recon",
        "train/kl",
    ),
}
CHARTS = {
    "classify": {
        "accuracy": ["train/acc", "val/acc"],
        "loss": ["train/loss", "val/loss"],
        "schedule": ["lr"],  # the learning rate: after output/ (a GAN's), before summary/
    },
    "gan": {
        "loss": ["train/d_loss", "train/g_loss"],
        "output": ["train/d_real", "train/d_fake"],  # D(x) with D(G(z))
        "schedule": ["lr_g", "lr_d"],
    },
    "vae": {
        "loss": ["train/loss", "train/neg_elbo", "val/neg_elbo"],  # a VAE's -ELBO
        "recon": ["train/recon", "val/recon"],
        "regularizer": ["train/kl", "val/kl"],  # the KL term (after recon/, unlike kl/)
        "schedule": ["train/kl_weight"],
    },
}
