"""``autoencoder``: each text -> itself from a noisy input (``train.autoencoder.noise``),
with the ``train.loss`` terms; validation and test texts are never training texts."""
from cubecore.modes.base import Mode
from cubecore.tasks import AUTOENCODER

MODE = Mode("autoencoder", AUTOENCODER)
