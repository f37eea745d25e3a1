"""Settings of published VAE experiments, for ``genmem kfold --preset NAME``."""

#: Settings of published experiments. ``"model"`` holds :class:`VAE` keyword
#: arguments, ``"dataset"``/``"prepare"`` the data (:func:`genmem.data.load_dataset`,
#: :func:`genmem.data.prepare`), and ``"folds"``/``"repeats"`` (K, R) are
#: settings of the K-fold runner, not of the model.
PRESETS = {
    "vdb-bmnist": {
        "description": "van den Burg & Williams (2021), BinarizedMNIST: MNIST padded to 32x32, "
        "dynamic binarization, Bernoulli MLP VAE 512-256, latent 16, Adam 1e-3, batch 64, 100 epochs, "
        "IS with 256 samples, K=10 folds x R=10 repeats",
        "dataset": "mnist",
        "prepare": {"pad_to": 32, "binarize": "dynamic"},
        "model": {
            "arch": "mlp", "hidden": (512, 256), "latent_dim": 16, "likelihood": "bernoulli", "image_shape": (32, 32),
            "binarize": "dynamic", "lr": 1e-3, "batch_size": 64, "epochs": 100, "num_samples": 256,
        },
        "folds": 10,
        "repeats": 10,
    },
}
