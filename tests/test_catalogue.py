"""The open catalogue: components by `_target_`, any torchvision/timm model, data=hf, metrics by name,
callbacks, top-k checkpoints, the debug group, the run's log, trackers that resume."""

import csv
import io

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

import ftool.models  # noqa: F401
from ftool.data import DataInfo
from ftool.engine.checkpoint import save_weights
from ftool.metrics import EpochMeter
from ftool.registry import MODELS
from tests.conftest import one_line_error, read_json, read_jsonl, sentiment_sentences, write_image_folder


def test_a_target_model_of_torchvisions_trains_evaluates_predicts_and_exports(cli, tmp_path):
    (tmp_path / "conf/model").mkdir(parents=True)
    (tmp_path / "conf/model/mobilenet.yaml").write_text("_target_: torchvision.models.mobilenet_v3_small\n")
    write_image_folder(tmp_path / "imgs", classes=("cat", "dog"), per_class=12)
    result = cli("train", "--config-dir", "conf", "model=mobilenet", "data=imagefolder", "data.root=imgs",
                 "trainer.max_steps=2", "hydra.run.dir=run")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "run/summary.json")["config"]["model"]["_target_"] == \
        "torchvision.models.mobilenet_v3_small"
    assert cli("eval", "ckpt=run").code == 0
    rows = list(csv.DictReader(io.StringIO(cli("predict", "ckpt=run", "input=imgs/cat/0.png", "output=csv").out)))
    assert list(rows[0]) == ["input", "label", "p(cat)", "p(dog)"]
    assert cli("export", "ckpt=run", "format=onnx").code == 0
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "run/export/model.onnx")).metadata_props}
    assert props["class_names"] == '["cat", "dog"]'
    # model._target_ as a command-line override replaces the chosen preset; a misspelt class is one line
    assert cli("train", "model._target_=torchvision.models.resnet18", "trainer.max_steps=1").code == 0
    one_line_error(cli("train", "optimizer._target_=torch.optim.RMSpro"), "Did you mean 'RMSprop'?")


def test_torchvision_and_timm_models_load_a_weights_file_but_their_head(tmp_path):
    for family, arch, head in (("torchvision", "resnet18", "fc"), ("torchvision", "mobilenet_v3_small", "classifier.3"),
                               ("timm", "resnet10t", "fc")):
        if family == "timm":
            pytest.importorskip("timm")
        source = MODELS.build(family, {"arch": arch}, input_shape=(3, 32, 32), num_outputs=10)
        save_weights(tmp_path / f"{arch}.safetensors", source.state_dict())
        model = MODELS.build(family, {"arch": arch, "weights": str(tmp_path / f"{arch}.safetensors")},
                             input_shape=(3, 32, 32), num_outputs=4)
        state, before = model.state_dict(), source.state_dict()
        assert state[f"{head}.weight"].shape[0] == 4 and f"{head}.weight" not in model.pretrained_parameters
        backbone = [n for n in model.pretrained_parameters]
        assert backbone and all(torch.equal(state[n], before[n]) for n in backbone), arch


def test_data_hf_reads_a_csv_of_texts_and_a_folder_of_images(cli, tmp_path, tiny_bert):
    positive, negative = sentiment_sentences(40)
    with open(tmp_path / "reviews.csv", "w", newline="") as f:
        csv.writer(f).writerows([["review", "stars"], *([t, "pos"] for t in positive), *([t, "neg"] for t in negative)])
    result = cli("train", "model=hf_classifier", f"model.name_or_path={tiny_bert}", "data=hf", "data.path=reviews.csv",
                 "data.text_column=review", "data.label_column=stars", f"data.cache_dir={tmp_path / 'hf'}",
                 "trainer.max_steps=3", "hydra.run.dir=text")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "text/summary.json")["data"]["class_names"] == ["neg", "pos"]
    write_image_folder(tmp_path / "imgs", classes=("cat", "dog", "owl"), per_class=8)
    result = cli("train", "data=hf", "data.path=imgs", f"data.cache_dir={tmp_path / 'hf'}", "trainer.max_steps=2",
                 "hydra.run.dir=images")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "images/summary.json")["data"]["class_names"] == ["cat", "dog", "owl"]
    one_line_error(cli("train", "data=hf", "data.path=imgs", "data.label_column=kind", f"data.cache_dir={tmp_path}/hf"),
                   "no column 'kind'")


def test_auroc_average_precision_and_averaged_f1_equal_scikit_learns():
    rng = np.random.default_rng(0)
    for classes in (2, 4):
        targets, logits = rng.integers(0, classes, 400), torch.tensor(rng.normal(size=(400, classes)))
        logits[torch.arange(400), torch.tensor(targets)] += 0.7  # better than chance
        meter = EpochMeter(DataInfo("classification", (3,), classes), torch.device("cpu"),
                           ["auroc", "average_precision", "f1_weighted", "top2_accuracy"])
        for start in range(0, 400, 64):
            meter.update(torch.tensor(1.0), logits[start:start + 64], torch.tensor(targets[start:start + 64]))
        got, probs = meter.compute("val"), logits.softmax(1).numpy()
        if classes == 2:
            auroc, ap = sk.roc_auc_score(targets, probs[:, 1]), sk.average_precision_score(targets, probs[:, 1])
        else:
            onehot = np.eye(classes)[targets]
            auroc = sk.roc_auc_score(targets, probs, multi_class="ovr")
            ap = sk.average_precision_score(onehot, probs)
        assert got["val/auroc"] == pytest.approx(auroc) and got["val/average_precision"] == pytest.approx(ap)
        assert got["val/f1_weighted"] == pytest.approx(sk.f1_score(targets, logits.argmax(1), average="weighted"))
        assert got["val/top2_accuracy"] == pytest.approx(sk.top_k_accuracy_score(targets, probs, k=2)
                                                         if classes > 2 else 1.0)


MODULE = '''
import torch
from torch.utils.data import TensorDataset
from ftool.data import DataInfo, Splits
from ftool.registry import METRICS

def blobs(n: int = 120):
    x = torch.randn(n, 4) + torch.arange(n)[:, None] % 2 * 3
    return Splits(TensorDataset(x, torch.arange(n) % 2), DataInfo("classification", (4,), 2, ["a", "b"]))

@METRICS.register("samples")
def samples(outputs, targets):
    return len(targets)

class Recorder:
    def __init__(self, file: str):
        self.file = file
    def on_fit_start(self, trainer):
        open(self.file, "a").write("fit_start\\n")
    def on_validation_end(self, trainer, metrics):
        open(self.file, "a").write(f"validation_end {metrics['val/samples']}\\n")
    def on_fit_end(self, trainer, result):
        open(self.file, "a").write(f"fit_end {result.steps}\\n")
'''


def test_debug_fast_runs_one_batch_of_each_split_with_callbacks_and_a_metric_of_ones_own(cli, tmp_path):
    (tmp_path / "mine.py").write_text(MODULE)
    result = cli("train", "debug=fast", "imports=[mine]", "trainer.metrics=[accuracy,samples]",
                 "callbacks=[lr_monitor]", "+callbacks.record._target_=mine.Recorder", "+callbacks.record.file=hooks",
                 "data.batch_size=16", "hydra.run.dir=run")
    assert result.code == 0, result.err
    summary = read_json(tmp_path / "run/summary.json")
    assert summary["timing"]["steps"] == 1 and summary["metrics"]["test/samples"] == 16
    assert (tmp_path / "hooks").read_text().splitlines() == ["fit_start", "validation_end 16.0", "fit_end 1"]
    log = (tmp_path / "run/ftool.log").read_text()
    assert "samples: 1,294 train / 144 val / 359 test; batch 16; 1 steps an epoch" in log and "test/samples" in log
    one_line_error(cli("train", "trainer.metrics=[aucroc]"), "Did you mean 'auroc'?")
    result = cli("train", "imports=[mine]", "data._target_=mine.blobs", "data.n=200", "model=mlp", "trainer.epochs=1",
                 "hydra.run.dir=blobs")
    assert result.code == 0, result.err
    assert read_json(tmp_path / "blobs/summary.json")["data"]["train_size"] == 200 - 40 - 16  # (test, val held out)
    assert cli("eval", "ckpt=blobs").code == 0


def test_save_top_k_keeps_the_best_epochs_named_and_a_profile_traces_steps(cli, tmp_path):
    result = cli("train", "trainer.save_top_k=2", "trainer.epochs=4", "data.batch_size=128", "hydra.run.dir=run")
    assert result.code == 0, result.err
    values = {r["epoch"]: r["val/accuracy"] for r in read_jsonl(tmp_path / "run/metrics.jsonl") if r["split"] == "val"}
    best = sorted(values, key=lambda e: -values[e])[:2]  # (ties: the earlier epoch)
    kept = sorted(p.name for p in (tmp_path / "run/checkpoints").glob("epoch=*"))
    assert kept == sorted(f"epoch={e}-val_accuracy={values[e]:.4f}.safetensors" for e in best)
    result = cli("train", "debug=profile", "hydra.run.dir=profiled")
    assert result.code == 0 and "Self CPU time total" in result.out, result.err
    assert list((tmp_path / "profiled/profile").glob("*.pt.trace.json"))


def test_debug_overfit_drives_the_training_loss_toward_zero(cli, tmp_path):
    result = cli("train", "debug=overfit", "trainer.epochs=40", "optimizer.lr=0.01", "hydra.run.dir=run")
    assert result.code == 0, result.err
    losses = [r["train/loss"] for r in read_jsonl(tmp_path / "run/metrics.jsonl") if "train/loss" in r]
    assert losses[0] > 1.5 and losses[-1] < 0.05


def test_mlflow_and_wandb_continue_the_same_tracked_run_on_resume(cli, tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert cli("train", "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "logger.mlflow.log_model=true",
               "trainer.epochs=1", "hydra.run.dir=run").code == 0
    assert cli("train", "trainer.resume=run", "trainer.epochs=2").code == 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["ftool"])
    client = mlflow.MlflowClient()
    assert len(runs) == 1 and [m.step for m in client.get_metric_history(runs.run_id[0], "val_accuracy")] == [41, 82]
    assert [a.path for a in client.list_artifacts(runs.run_id[0], "checkpoints")] == ["checkpoints/best.safetensors"]
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert cli("train", "logger=wandb", "trainer.epochs=1", "hydra.run.dir=wb").code == 0
    assert cli("train", "trainer.resume=wb", "trainer.epochs=2").code == 0
    tracked = (tmp_path / "wb/wandb.run_id").read_text()
    assert sorted(p.name.rpartition("-")[2] for p in (tmp_path / "wb/wandb").glob("offline-run-*")) == [tracked] * 2
