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
