"""Checkpoints: atomic writes, safe loads, a resumable pair that survives a crash between its two writes."""

import os
import pickle

import pytest
import torch
from torch import nn

from ftool.engine import checkpoint
from ftool.engine.atomic import atomic_write
from ftool.rundir import RunDir


def test_weights_round_trip_with_metadata_and_without_wrapper_prefixes(tmp_path):
    model = nn.Linear(3, 2)
    wrapped = nn.Module()
    wrapped.module = model  # as DDP wraps it (torch.compile's: _orig_mod)
    checkpoint.save_weights(tmp_path / "w.safetensors", wrapped, epoch=3)
    tensors, meta = checkpoint.load_weights(tmp_path / "w.safetensors")
    assert set(tensors) == {"weight", "bias"} and meta == {"format": "ftool-1", "epoch": "3"}
    fresh = nn.Linear(3, 2)
    checkpoint.load_into(fresh, tmp_path / "w.safetensors")
    assert torch.equal(fresh.weight, model.weight)


def test_a_state_file_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (tmp_path / "w.pt").write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        checkpoint.load_state_dict_file(tmp_path / "w.pt")


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    atomic_write(tmp_path / "f", b"old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError, match="No space left"):
        atomic_write(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_the_resumable_checkpoint_is_a_consistent_pair_even_when_a_save_stops_halfway(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    checkpoint.save_last(run, {"w": torch.zeros(2)}, {"epoch_done": 1, "step": 10})
    real = checkpoint.save_state
    monkeypatch.setattr(checkpoint, "save_state", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed between the weights and the state
        checkpoint.save_last(run, {"w": torch.ones(2)}, {"epoch_done": 2, "step": 20})
    monkeypatch.setattr(checkpoint, "save_state", real)
    weights, state = checkpoint.load_last(run)
    assert state["step"] == 10 and weights == run.last_prev_weights
    assert torch.equal(checkpoint.load_weights(weights)[0]["w"], torch.zeros(2))
