from ftool.engine import progress


def test_without_a_terminal_progress_is_plain_lines_with_an_eta(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
    p = progress.TrainProgress(True, epochs=2, every=1)
    assert p.bar is None  # pytest's captured stdout is not a terminal: no bar redraws
    p.start_epoch(1, total=10, done=4)  # resumed after 4 batches
    p.advance(6, 0.5, 1234.0)
    p.end_epoch({"train/loss": 0.25, "val/accuracy": 0.9}, "val/accuracy")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("epoch 1/2 step 6/10 loss 0.5000 1,234 samples/s, epoch ETA 0:0")
    assert out[1] == "epoch 1/2  train/loss 0.2500  val/accuracy 0.9000"


def test_disabled_progress_prints_nothing(capsys):
    p = progress.TrainProgress(False, epochs=1, every=1)
    p.start_epoch(1, total=3)
    p.advance(3, 0.1, 10.0)
    p.end_epoch({"train/loss": 0.1}, "val/accuracy")
    assert capsys.readouterr().out == ""
