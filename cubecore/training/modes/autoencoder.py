"""``autoencoder``: each text -> itself from a noisy input (``train.autoencoder.noise``),
with the ``train.loss`` terms; validation and test texts are never training texts."""
from cubecore.training.modes.base import Mode
from cubecore.training.pairings import AUTOENCODER

MODE = Mode("autoencoder", AUTOENCODER)
