"""``dialogue``: question embedding -> answer embedding, with the ``train.loss`` terms."""
from cubecore.modes.base import Mode
from cubecore.tasks import DIALOGUE

MODE = Mode("dialogue", DIALOGUE)
