import io
import os
import sys

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


def test_an_evaluation_without_a_terminal_is_plain_lines_with_an_eta(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
    p = progress.EvalProgress(True, "test", total=4)
    p.advance()
    p.advance()
    p.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("test 1/4 batches, ETA 0:0") and out[1].startswith("test 2/4 batches, ETA 0:0")


def test_on_a_terminal_validation_is_a_row_of_the_training_bar_that_goes_when_done(monkeypatch):
    monkeypatch.setattr(progress, "console", progress._Console(file=io.StringIO(), force_terminal=True, width=120))
    train = progress.TrainProgress(True, epochs=1, every=1)
    train.start_epoch(1, total=5)
    val = train.evaluation("epoch 1/1 val", total=3)  # rich allows one live display at a time
    assert val.bar is train.bar
    assert [t.description for t in train.bar.tasks] == ["epoch 1/1", "epoch 1/1 val"]
    val.advance()
    assert train.bar.tasks[1].completed == 1
    val.close()
    assert [t.description for t in train.bar.tasks] == ["epoch 1/1"]
    train.close()

    alone = progress.EvalProgress(True, "test", total=2)  # after training: its own bar
    assert alone.bar is not None and alone.bar is not train.bar and alone.bar.live.is_started
    alone.close()
    assert not alone.bar.live.is_started


def test_a_closed_stdout_discards_output_instead_of_exiting(monkeypatch):
    read, write = os.pipe()
    os.close(read)  # the reader went away, as `| head` does
    with os.fdopen(write, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        term = progress._Console(file=stdout)
        term.print("a line nobody reads")  # rich's own Console raises SystemExit(1) here
        assert term.quiet


def test_evaluate_reports_each_batch_and_closes_the_progress(capsys, monkeypatch):
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ftool.data import DataInfo
    from ftool.engine.accelerator import Accelerator
    from ftool.engine.trainer import evaluate

    monkeypatch.setattr(progress, "PLAIN_LINE_SECONDS", 0.0)
    data = TensorDataset(torch.randn(10, 4), torch.randint(0, 3, (10,)))
    info = DataInfo("classification", (4,), 3)
    metrics = evaluate(torch.nn.Linear(4, 3), DataLoader(data, batch_size=4), torch.nn.CrossEntropyLoss(),
                       Accelerator(torch.device("cpu"), "32", False), info, "val",
                       progress.EvalProgress(True, "val", total=3))
    assert 0.0 <= metrics["val/accuracy"] <= 1.0
    assert [line.split(",")[0] for line in capsys.readouterr().out.splitlines()] == [
        "val 1/3 batches", "val 2/3 batches", "val 3/3 batches"]


def test_the_per_class_table_shows_the_worst_present_classes_of_many_with_their_likeliest_mistake():
    k = 30
    confusion = [[10 if i == j else 0 for j in range(k)] for i in range(k)]
    confusion[5][5], confusion[5][7] = 2, 8  # class 5: mostly taken for class 7
    f1 = [1.0] * k
    f1[5], f1[7] = 0.3, 0.7
    support = [10] * k
    support[0], f1[0] = 0, 0.0  # no samples: F1 0, but not among the worst
    per_class = {"classes": [f"c{i}" for i in range(k)], "precision": [1.0] * k, "recall": [1.0] * k, "f1": f1,
                 "support": support, "confusion_matrix": confusion}
    with progress.console.capture() as captured:
        progress.print_per_class(per_class)
    lines = captured.get().splitlines()
    assert "the 10 of 30 with the lowest F1" in lines[0]
    rows = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert len(rows) == 10 and rows[:2] == ["c5", "c7"] and "c0" not in rows
    assert "c7 (8)" in next(line for line in lines if line.startswith("│ c5 "))


def test_the_results_table_shows_a_diverged_loss_in_powers_of_ten(capsys):
    progress.print_metrics("results", {"train/loss": 16739798451075678208.0, "val/r2": -0.25, "test/mse": float("nan")})
    out = capsys.readouterr().out
    assert "1.674e+19" in out and "-0.2500" in out and "nan" in out and "16739798451075678208" not in out
