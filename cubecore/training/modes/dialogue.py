"""``dialogue``: question embedding -> answer embedding, with the ``train.loss`` terms."""
from cubecore.training.modes.base import Mode
from cubecore.training.pairings import DIALOGUE

MODE = Mode("dialogue", DIALOGUE)
