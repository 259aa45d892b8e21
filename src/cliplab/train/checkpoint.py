"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a folder `checkpoints/step_00001234/` holding
- `model.safetensors`: the model in cliplab's format (loadable on its own by `cliplab.load`);
- `trainer.pt`: optimiser state and every process's random generator states, read back with
  `torch.load(weights_only=True)`;
- `state.json`: step, epoch, position in the data (per process), counters.
It is written under a temporary name, every file fsynced, and renamed into place, so a folder named
`step_*` is always complete, whatever killed the run and when.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import read_checkpoint, save_checkpoint
from ..errors import CheckpointError

STEP_PATTERN = re.compile(r"^step_(\d{8,})$")
STATE_KEYS = ("step", "world", "workers", "stream_epoch", "ranks", "bad_steps", "bad_in_row", "config")


def capture_rng(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    random.setstate(_as_python_state(state["python"]))


def _as_python_state(state: Any) -> tuple:
    """random.setstate wants nested tuples; a round trip through storage may have made them lists."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def save_training_checkpoint(
    folder: str | Path,
    step: int,
    model: torch.nn.Module,
    trainer_tensors: dict[str, Any],
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write the checkpoint for `step` under `folder`, atomically, and keep only the newest `keep`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step:08d}"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_checkpoint(model, tmp / "model.safetensors")
        torch.save(trainer_tensors, tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():  # the same step written again (a resumed run ending where it left)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_of(path: Path) -> int:
    match = STEP_PATTERN.match(path.name)
    return int(match.group(1)) if match else -1


def remove_unfinished(folder: str | Path) -> list[Path]:
    """Remove the temporary folders of checkpoint writes that were interrupted (`.step_*.tmp-PID`)."""
    stale = sorted(Path(folder).glob(".step_*.tmp-*")) if Path(folder).is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and STEP_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_PATTERN.match(p.name).group(1)))


def resolve_resume(resume: str, checkpoints_folder: Path) -> Path:
    """`latest` means the newest complete checkpoint of this run; otherwise a checkpoint folder."""
    if resume == "latest":
        found = list_checkpoints(checkpoints_folder)
        if not found:
            raise CheckpointError(f"--resume latest: no checkpoint in {checkpoints_folder} yet")
        return found[-1]
    path = Path(resume)
    if path.is_dir() and not (path / "state.json").is_file() and list_checkpoints(path / "checkpoints"):
        return list_checkpoints(path / "checkpoints")[-1]  # a run folder: its newest checkpoint
    if not (path / "state.json").is_file():
        raise CheckpointError(f"--resume {resume}: not a training checkpoint folder (no state.json)")
    return path


def load_training_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model state dict, trainer tensors, state) of a checkpoint folder."""
    model_state = read_checkpoint(path / "model.safetensors").state_dict
    try:
        trainer_tensors = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path / 'trainer.pt'} is damaged ({str(err).splitlines()[0]})") from None
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path / 'state.json'} is damaged ({err})") from None
    if not isinstance(state, dict) or (missing := [key for key in STATE_KEYS if key not in state]):
        raise CheckpointError(
            f"{path / 'state.json'} is damaged (it lacks {missing if isinstance(state, dict) else STATE_KEYS})"
        )
    if not isinstance(trainer_tensors, dict) or not {"optimizer", "rng"} <= set(trainer_tensors):
        raise CheckpointError(f"{path / 'trainer.pt'} is damaged (it lacks the optimiser or the random states)")
    return model_state, trainer_tensors, state
