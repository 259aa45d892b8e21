"""An exponential moving average of the trained weights (Polyak averaging), validated and saved in their place.

A short run on small data ends while the weights still jump from batch to batch; their average over
the last few hundred steps is usually the better model. The average starts equal to the weights and
its decay warms up as (1 + n) / (10 + n) after n updates, so early steps, far from where training
ends, fade quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import CheckpointError


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self._parameters(model)]
        self.updates = 0

    def _parameters(self, model: nn.Module) -> list[torch.Tensor]:
        parameters = dict(model.named_parameters())
        return [parameters[name] for name in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (after each optimiser step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self._parameters(model)], 1 - decay)

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """The model holds the average inside this block and its own weights again after it."""
        parameters = [p.detach() for p in self._parameters(model)]
        own = [p.clone() for p in parameters]
        torch._foreach_copy_(parameters, self.average)
        try:
            yield
        finally:
            torch._foreach_copy_(parameters, own)

    def state_dict(self) -> dict:
        return {"names": list(self.names), "average": list(self.average), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if list(state["names"]) != self.names:
            raise CheckpointError(
                "the checkpoint's weight average is of other trained parameters (were towers locked otherwise?)"
            )
        torch._foreach_copy_(self.average, list(state["average"]))
        self.updates = int(state["updates"])
