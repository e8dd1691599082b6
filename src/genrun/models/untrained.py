"""The `module` of models that have no training (DeepDream, Gatys style transfer): `genrun train` with one
of them ends in one line pointing at `genrun sample`, instead of a missing-key traceback."""

from __future__ import annotations

from genrun.errors import GenrunError
from genrun.models.base import GenrunModule


class NoTraining(GenrunModule):
    def __init__(self, model: str, example: str):
        raise GenrunError(f"model={model} has no training (a frozen network and an optimiser over the image); "
                          f"run it with: {example}")
