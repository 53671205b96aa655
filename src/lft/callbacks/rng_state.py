"""Random states in the checkpoint (dropout, augmentation), so a resumed run draws what an uninterrupted one would."""

import random

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RngState(Callback):
    def state_dict(self) -> dict:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only: checkpoints stay loadable with torch.load(weights_only=True).
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
