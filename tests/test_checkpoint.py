import os
import pickle

import pytest
import torch
from torch import nn

from ftool.engine import checkpoint
from ftool.engine.atomic import atomic_write
from ftool.errors import FtoolError


def test_weights_round_trip_with_metadata_and_without_wrapper_prefixes(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    compiled = torch.compile(model)  # wraps it as _orig_mod; nothing compiles until called
    checkpoint.save_weights(tmp_path / "w.safetensors", compiled, epoch=3, monitor="val/accuracy")
    tensors, meta = checkpoint.load_weights(tmp_path / "w.safetensors")
    assert set(tensors) == {"0.weight", "0.bias"}
    assert meta["epoch"] == "3" and meta["monitor"] == "val/accuracy" and meta["format"] == "ftool-1"
    other = nn.Sequential(nn.Linear(3, 2))
    checkpoint.load_into(other, tmp_path / "w.safetensors")
    assert torch.equal(other[0].weight, model[0].weight)


def test_a_mismatched_model_gets_a_clear_error(tmp_path):
    checkpoint.save_weights(tmp_path / "w.safetensors", nn.Linear(3, 2))
    with pytest.raises(FtoolError, match=r"^ckpt: .* does not fit this model: weight is \[2, 3\] in the checkpoint, "
                                         r"\[2, 4\] in the model; were the model's settings \(model\.\*\) changed"):
        checkpoint.load_into(nn.Linear(4, 2), tmp_path / "w.safetensors")
    deeper = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2), nn.Linear(2, 1))  # named by the option given
    checkpoint.save_weights(tmp_path / "w.safetensors", nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(FtoolError, match=r"^trainer.resume: .* 2.weight is missing; 2.bias is missing \(and 2 more\);"):
        checkpoint.load_into(deeper, tmp_path / "w.safetensors", key="trainer.resume")


def test_not_a_safetensors_file(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(FtoolError, match="is not a safetensors checkpoint"):
        checkpoint.load_weights(tmp_path / "bad.safetensors")


def test_a_checkpoint_argument_that_names_no_weights_file_says_which_to_give(tmp_path):
    from ftool.rundir import locate_checkpoint

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("{}")
    (run / "checkpoints").mkdir()
    checkpoint.save_weights(run / "checkpoints" / "last.safetensors", nn.Linear(3, 2))
    (run / "checkpoints" / "last.state.pt").write_bytes(b"state")
    assert locate_checkpoint(str(run))[1] == run / "checkpoints" / "last.safetensors"  # no best yet: the last
    with pytest.raises(FtoolError, match="finetune.from: .*last.state.pt is not a weights file.*its weights are "
                                         "last.safetensors"):
        locate_checkpoint(str(run / "checkpoints" / "last.state.pt"), "finetune.from")


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_state_file_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.state.pt"
    with open(path, "wb") as f:
        pickle.dump({"step": 1, "payload": Exploit()}, f)
    with pytest.raises(FtoolError, match="refusing to load"):
        checkpoint.load_state(path)
    assert not (tmp_path / "PWNED").exists()


def test_state_round_trip(tmp_path):
    opt = torch.optim.Adam(nn.Linear(2, 2).parameters())
    checkpoint.save_state(tmp_path / "s.pt", {"step": 5, "optimizer": opt.state_dict(), "best": None})
    assert checkpoint.load_state(tmp_path / "s.pt")["step"] == 5


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write(target, b"old")

    with pytest.raises(TypeError):
        atomic_write(target, object())  # fails while writing
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left behind
    assert (target.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_resumable_checkpoint_is_a_consistent_pair_even_when_a_save_stops_halfway(tmp_path, monkeypatch):
    from ftool.rundir import RunDir

    run = RunDir(tmp_path)
    run.checkpoints.mkdir()
    model = nn.Linear(2, 2)

    def save(step):
        with torch.no_grad():
            model.weight.fill_(step)
        checkpoint.save_last(run, model, {"epoch_done": step, "step": step})

    save(1)
    save(2)
    weights, state = checkpoint.load_last(run)
    assert weights == run.last_weights and state["step"] == 2
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.safetensors", "last.state.pt"]  # no stale copy

    def killed(path, state):  # the process dies after the new weights, before their state
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        save(3)
    weights, state = checkpoint.load_last(run)  # step 2's state, with step 2's weights kept beside step 3's
    assert weights == run.last_prev_weights and state["step"] == 2
    assert checkpoint.load_weights(weights)[0]["weight"].eq(2).all()
