"""`ftool predict` and `ftool export` on image models, unfreezing during fine-tuning, and
torchvision's pretrained weights when they cannot be downloaded."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ftool.engine.accelerator import cpu_has_bf16
from ftool.errors import FtoolError
from ftool.models.torchvision_models import pretrained_state
from ftool.registry import MODELS
from tests.conftest import assert_one_line_error, ftool, read_json
from tests.dataset_files import write_image_folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """simplecnn trained to tell bright 'cat' images from dark 'dog' ones."""
    root = tmp_path_factory.mktemp("images")
    write_image_folder(root / "data", per_class=30)
    run = root / "run"
    result = ftool("train", "data=imagefolder", "data.root=data", "data.num_workers=0", "model.padding=2",
                   "trainer.epochs=5", "trainer.progress=false", f"hydra.run.dir={run}", cwd=root)
    assert result.returncode == 0, result.stderr
    return run


def _image(path, value):
    Image.fromarray(np.full((20, 16, 3), value, dtype=np.uint8)).save(path)  # another size: predict resizes


def test_predict_labels_image_files_and_folders(image_run, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    _image(folder / "a_bright.png", 210)
    _image(folder / "b_dark.png", 35)
    for sub in ("more", ".thumbnails"):  # subfolders are read, hidden ones skipped
        (folder / sub).mkdir()
        _image(folder / sub / "c_bright.png", 220)
    result = ftool("predict", f"ckpt={image_run}", f"input={folder}", f"input={folder / 'b_dark.png'}", "output=json",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)
    assert [Path(p["input"]).relative_to(folder).as_posix() for p in predictions] == \
        ["a_bright.png", "b_dark.png", "more/c_bright.png", "b_dark.png"]
    assert [p["label"] for p in predictions] == ["cat", "dog", "cat", "dog"]
    assert predictions[0]["input"].endswith("a_bright.png") and set(predictions[0]["probabilities"]) == {"cat", "dog"}
    # output=csv: the same predictions as rows for a spreadsheet (input, label, p(<class>) per class),
    # here of a file pattern matching the same images (glob's ** skips hidden folders too)
    table = ftool("predict", f"ckpt={image_run}", f"input={folder}/**/*.png", f"input={folder / 'b_dark.png'}",
                  "output=csv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert list(rows[0]) == ["input", "label", "p(cat)", "p(dog)"]
    assert [(r["input"], r["label"], float(r["p(cat)"])) for r in rows] == \
        [(p["input"], p["label"], p["probabilities"]["cat"]) for p in predictions]
    # The run's device and precision, as eval uses them; overrides apply (bf16 autocast where the CPU has it).
    precision = "bf16-mixed" if cpu_has_bf16() else "32"
    table = ftool("predict", f"ckpt={image_run}", f"input={folder}", f"trainer.precision={precision}", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert f"best.safetensors (cpu, precision {precision})" in table.stdout
    labels = [line.split("│")[2].strip() for line in table.stdout.splitlines() if line.startswith("│")]
    assert [label for label in labels if label] == ["cat", "dog", "cat"]  # (a long path folds over several lines)
    assert_one_line_error(ftool("predict", f"ckpt={image_run}", "input=nothing-here.png", cwd=tmp_path),
                          "input: 'nothing-here.png' is not an image file or folder")
    phone = tmp_path / "phone"  # an iPhone's photos: their folder was "no image files", the file "not an image"
    phone.mkdir()
    (phone / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    assert_one_line_error(ftool("predict", f"ckpt={image_run}", f"input={phone}", cwd=tmp_path),
                          f"input: {phone} has no image files (.jpg .jpeg .png", "; it holds 1 .heic file, which ftool "
                          "cannot read (convert to JPEG or PNG)")
    assert_one_line_error(ftool("predict", f"ckpt={image_run}", f"input={phone / 'IMG_0001.HEIC'}", cwd=tmp_path),
                          f"input: {phone / 'IMG_0001.HEIC'}: ftool cannot read .HEIC images; convert it to JPEG or PNG")
    assert_one_line_error(ftool("predict", f"ckpt={image_run}", cwd=tmp_path), "predict needs input=... (predict: label new inputs: ckpt=<run dir|file> "
                          "input=<text|text file|table|-|image|folder|numbers>")
    assert_one_line_error(ftool("predict", f"ckpt={image_run}", f"input={folder}", "text_column=review", cwd=tmp_path),
                          "text_column: names a table's column of texts, and this run's model takes no text")


def test_a_run_given_a_relative_data_root_is_evaluated_from_any_folder(image_run, tmp_path):
    assert "  root: data\n" in (image_run / ".hydra" / "config.yaml").read_text()  # relative to where it ran
    result = ftool("eval", f"ckpt={image_run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tested = read_json(image_run / "summary.json")["metrics"]
    assert read_json(image_run / "eval.json")["metrics"] == pytest.approx({k: v for k, v in tested.items() if k.startswith("test/")})


def test_eval_on_other_images_needs_the_runs_classes_and_input_shape(image_run, tmp_path):
    write_image_folder(tmp_path / "new", per_class=5)  # the run's classes, at its size
    result = ftool("eval", f"ckpt={image_run}", "data.root=new", "split=all", cwd=tmp_path)
    assert result.returncode == 0 and "eval (all 10 samples)" in result.stdout, result.stderr
    evaluated = read_json(image_run / "eval.json")
    assert evaluated["data"]["root"] == "new" and evaluated["data"]["samples"] == 10  # every image
    assert evaluated["metrics"]["all/accuracy"] >= 0.8 and sum(evaluated["per_class"]["support"]) == 10
    # New data with some of the run's classes is labelled by name, as the run labels them.
    write_image_folder(tmp_path / "cats", classes=("cat",), per_class=5)
    result = ftool("eval", f"ckpt={image_run}", "data.root=cats", "split=all", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    per_class = read_json(image_run / "eval.json")["per_class"]
    assert per_class["classes"] == ["cat", "dog"] and per_class["support"] == [5, 0]
    assert per_class["confusion_matrix"][0][0] >= 4  # bright images: cats, scored against the cat output
    # A single new photo: split=all holds nothing out, so data too small to split evaluates.
    write_image_folder(tmp_path / "one", classes=("cat",), per_class=1)
    result = ftool("eval", f"ckpt={image_run}", "data.root=one", "split=all", cwd=tmp_path)
    assert result.returncode == 0 and "eval (all 1 sample)" in result.stdout, result.stderr
    assert read_json(image_run / "eval.json")["per_class"]["support"] == [1, 0]
    assert_one_line_error(ftool("eval", f"ckpt={image_run}", "data.root=one", cwd=tmp_path),  # (test: held out of it)
                          "data: holding out 1 of 1 samples leaves none to train on",
                          "; split=all scores every sample of new data")
    # Other class names would score each label against another class's output: refused.
    write_image_folder(tmp_path / "renamed", classes=("cat", "fox"), per_class=5)
    assert_one_line_error(ftool("eval", f"ckpt={image_run}", "data.root=renamed", cwd=tmp_path),
                          "data: its classes (cat, fox) are not those the run was trained on (cat, dog)")
    write_image_folder(tmp_path / "large", per_class=5, size=(24, 20))
    assert_one_line_error(ftool("eval", f"ckpt={image_run}", "data.root=large", cwd=tmp_path),
                          "data: its inputs are 3x24x20, the run's model takes 3x12x10; data.image_size=[12,10] resizes")
    result = ftool("eval", f"ckpt={image_run}", "data.root=large", "data.image_size=[12,10]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_with_many_classes_the_table_shows_the_likeliest(capsys):
    from ftool.commands.predict import _print_labels

    names = [str(d) for d in range(10)]  # a column each would not fit
    probabilities = dict(zip(names, [0.02, 0.05, 0.6, 0.01, 0.2, 0.03, 0.04, 0.02, 0.02, 0.01]))
    _print_labels([{"input": "digit.png", "label": "2", "probabilities": probabilities}], names)
    table = capsys.readouterr().out
    assert "p(label)" in table and "next likeliest" in table and "p(0)" not in table
    row = next(line for line in table.splitlines() if "digit.png" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells == ["digit.png", "2", "0.6000", "4 0.2000, 1 0.0500"]

    _print_labels([{"input": "a.png", "label": "cat", "probabilities": {"cat": 0.75, "dog": 0.25}}], ["cat", "dog"])
    assert "│ a.png │ cat   │ 0.7500 │ 0.2500 │" in capsys.readouterr().out  # few classes: one column each


def test_inputs_and_class_names_in_brackets_are_shown_as_they_are(capsys):
    """rich read `[word]` as a style: a review's "[spoiler]" was left out of the table, and one with a
    "[/b]" in it was a traceback."""
    from ftool.commands.predict import _print_labels, _print_values

    review = "[spoiler] the twist [/b] is dull"
    _print_labels([{"input": review, "label": "[neg]", "probabilities": {"[neg]": 0.75, "pos": 0.25}}], ["[neg]", "pos"])
    assert f"│ {review} │ [neg] │   0.7500 │ 0.2500 │" in capsys.readouterr().out
    _print_values([{"input": "[x] 1,2", "prediction": 1.5}], ["[price]"])
    assert "│ [x] 1,2 │     1.5 │" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["safetensors", "torchscript", "pt2", "onnx"])
def test_exported_image_models_give_the_checkpoints_outputs(image_run, tmp_path, fmt):
    from ftool.models.cnn import SimpleCNN

    folder = tmp_path / "exports"
    folder.mkdir()
    result = ftool("export", f"ckpt={image_run}", f"format={fmt}", f"out={folder}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # torch.jit's deprecation warnings, say, are no news to act on
    out = folder / {"safetensors": "model.safetensors", "torchscript": "model.pt", "pt2": "model.pt2",
                    "onnx": "model.onnx"}[fmt]
    assert [p.name for p in folder.iterdir()] == [out.name]  # into the folder given; no temporary file left
    x = torch.rand(3, 3, 12, 10)  # images as image libraries read them, scaled to [0, 1]
    data = read_json(image_run / "summary.json")["data"]
    normalized = (x - torch.tensor(data["mean"]).view(3, 1, 1)) / torch.tensor(data["std"]).view(3, 1, 1)
    reference = SimpleCNN((3, 12, 10), 2, padding=2).eval()
    reference.load_state_dict(load_file(image_run / "checkpoints" / "best.safetensors"))
    with torch.no_grad():
        expected = reference(normalized)  # the graphs normalize inside; the weights file is the bare model
        if fmt == "safetensors":
            exported = SimpleCNN((3, 12, 10), 2, padding=2).eval()
            exported.load_state_dict(load_file(out))
            got = exported(normalized)
        elif fmt == "torchscript":
            got = torch.jit.load(str(out))(x)
        elif fmt == "pt2":
            got = torch.export.load(str(out)).module()(x)  # batch 3: the example had 2
        else:
            got = torch.from_numpy(onnxruntime.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0])
    assert torch.allclose(got, expected, atol=1e-5)


def test_export_errors_are_one_line(image_run, tmp_path):
    assert_one_line_error(ftool("export", f"ckpt={image_run}", "format=pickle", cwd=tmp_path),
                          "format: must be one of safetensors, torchscript, pt2, onnx")
    assert_one_line_error(ftool("export", f"ckpt={image_run}", "out=model.onnx", cwd=tmp_path),  # format= forgotten
                          "out: model.onnx has the suffix of format=onnx, and this export is format=safetensors; "
                          "give format=onnx, or out=<name>.safetensors")
    assert not (tmp_path / "model.onnx").exists()
    assert_one_line_error(ftool("export", f"ckpt={image_run}", "format=pt2", "out=model", cwd=tmp_path),
                          "out: model: a pt2 export's name ends in .pt2 (torch.export.load expects it); give out=model.pt2")


MODELS_THAT_TRACE_WRONG = """\
import math
import torch
from torch import nn
from ftool.registry import MODELS


class Threshold(nn.Module):
    def __init__(self, features, outputs):
        super().__init__()
        self.usual, self.rare = nn.Linear(features, outputs), nn.Linear(features, outputs)

    def forward(self, x):
        x = x.flatten(1)
        if x.max() > 1e6:  # a branch on the values: a trace keeps the one its example took
            return self.rare(x)
        return self.usual(x)


class FixedBatch(Threshold):
    def forward(self, x):
        return self.usual(x.flatten(1)) + torch.zeros(int(x.shape[0]), 1)  # a trace fixes the batch size


@MODELS.register("threshold")
def threshold(input_shape, num_outputs):
    return Threshold(math.prod(input_shape), num_outputs)


@MODELS.register("fixed_batch")
def fixed_batch(input_shape, num_outputs):
    return FixedBatch(math.prod(input_shape), num_outputs)
"""


def test_an_export_that_a_trace_got_wrong_is_named(tmp_path):
    """Exports were checked on the batch they were traced on, which a trace always reproduces: a model
    traced with its batch size fixed exported without a word and failed on any other batch, and a
    branch on tensor values was silenced with the tracer's other warnings."""
    (tmp_path / "mine.py").write_text(MODELS_THAT_TRACE_WRONG)
    for name in ("threshold", "fixed_batch"):
        (tmp_path / "conf" / "model").mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / "model" / f"{name}.yaml").write_text(f"name: {name}\n")
        result = ftool("train", "--config-dir", "conf", f"model={name}", "imports=[mine]", "trainer.epochs=1",
                       "trainer.progress=false", f"hydra.run.dir={name}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    line, sized = (next(i + 1 for i, text in enumerate(MODELS_THAT_TRACE_WRONG.splitlines()) if code in text)
                   for code in ("if x.max() > 1e6", "int(x.shape[0])"))
    for fmt in ("torchscript", "onnx"):
        result = ftool("export", "ckpt=threshold", f"format={fmt}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr  # (every input here takes the usual branch)
        assert result.stderr == (f"warning: format={fmt}: the model's code turns a tensor into a Python value "
                                 f"({tmp_path / 'mine.py'}:{line}: a branch on it, a size); the export keeps what its "
                                 f"example batch gave and may differ from the model on other inputs. format=pt2 "
                                 f"exports only what it can follow exactly\n")
    assert_one_line_error(ftool("export", "ckpt=threshold", "format=pt2", cwd=tmp_path),
                          "format=pt2: the model did not export (GuardOnDataDependentSymNode")
    result = ftool("export", "ckpt=fixed_batch", "format=torchscript", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    warning, error = result.stderr.splitlines()
    assert warning.startswith("warning: format=torchscript: the model's code turns a tensor into a Python value "
                              f"({tmp_path / 'mine.py'}:{sized}: a branch on it, a size)")
    assert error == (f"ftool: error: export: {tmp_path / 'fixed_batch' / 'export' / 'model.pt'} fails on a batch of "
                     f"3 samples, having been traced on 2 (The following operation failed in the TorchScript "
                     f"interpreter.); do not use it")


def test_an_export_never_replaces_a_runs_records(image_run, tmp_path):
    """out= naming the run's summary.json or checkpoint wrote the export over it: the run was gone."""
    records = {p: p.read_bytes() for p in image_run.rglob("*") if p.is_file()}
    for fmt, out in [("onnx", "summary.json"), ("safetensors", "checkpoints/best.safetensors"),
                     ("torchscript", "checkpoints"), ("onnx", ".hydra/model.onnx")]:
        assert_one_line_error(ftool("export", f"ckpt={image_run}", f"format={fmt}", f"out={image_run / out}",
                                    cwd=tmp_path),
                              f"out: {image_run / out} is in the run {image_run}'s records (.hydra, checkpoints/, "
                              f"summary.json, metrics.jsonl, ...), and an export there would replace them; "
                              f"give another path, such as {image_run / 'export'}")
    assert {p: p.read_bytes() for p in image_run.rglob("*") if p.is_file()} == records
    done = ftool("export", f"ckpt={image_run}", "format=onnx", f"out={image_run / 'model.onnx'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # beside the records is no record
    (image_run / "model.onnx").unlink()


def test_unfreeze_at_epoch_trains_the_backbone_from_then_on(tmp_path):
    pre, tuned = tmp_path / "pre", tmp_path / "tuned"
    assert ftool("train", "trainer.epochs=1", "trainer.progress=false", f"hydra.run.dir={pre}", cwd=tmp_path).returncode == 0
    result = ftool("finetune", f"finetune.from={pre}", "finetune.freeze=backbone", "finetune.unfreeze_at_epoch=2",
                   "trainer.epochs=2", "trainer.save_every_n_epochs=1", "trainer.progress=false",
                   f"hydra.run.dir={tuned}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_json(tuned / "summary.json")  # the header says how much of the model trains at first
    assert f"{summary['parameters']:,} parameters ({summary['finetune']['trainable_parameters']:,} trainable)" \
        in result.stdout and summary["finetune"]["trainable_parameters"] == 128 * 10 + 10  # the head (fc 128 -> 10) only
    assert "epoch 2: 4 frozen parameters now train" in result.stdout
    start = load_file(pre / "checkpoints" / "best.safetensors")
    one, two = (load_file(tuned / "checkpoints" / f"epoch-{e}.safetensors") for e in (1, 2))
    assert torch.equal(one["features.0.weight"], start["features.0.weight"])  # frozen in epoch 1
    assert not torch.equal(two["features.0.weight"], one["features.0.weight"])  # trained in epoch 2
    assert not torch.equal(one["head.4.weight"], start["head.4.weight"])
    assert_one_line_error(ftool("finetune", f"finetune.from={pre}", "finetune.freeze=backbone",
                                "finetune.unfreeze_at_epoch=3", "trainer.epochs=2", cwd=tmp_path),
                          "finetune.unfreeze_at_epoch: 3 is after the run's last epoch (2); the frozen layers would "
                          "never train")


def test_torchvision_weights_offline_name_the_file_to_provide(tmp_path, monkeypatch):
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    message = assert_one_line_error(
        ftool("train", "model=resnet18", "model.weights=IMAGENET1K_V1", "data=synthetic", "data.shape=[3,32,32]",
              cwd=tmp_path, env=env), "model.weights: cannot get resnet18 IMAGENET1K_V1")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    with pytest.raises(FtoolError, match="model.weights: resnet18 has no weights 'IMAGENET9'; options: IMAGENET1K_V1"):
        pretrained_state("resnet18", "IMAGENET9")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("ResNet18_Weights.IMAGENET1K_V1", "imagenet1k_v1"):  # as torchvision's code names them; any case
        with pytest.raises(FtoolError, match=f"cannot get resnet18 {name} .*resnet18-f37072fd.pth"):
            pretrained_state("resnet18", name)
    with pytest.raises(FtoolError, match="resnet18's pretrained weights take 3-channel images; this data has 1"):
        MODELS.build("resnet18", {"weights": "IMAGENET1K_V1"}, input_shape=(1, 8, 8), num_outputs=10)


def test_predict_on_a_regression_run_takes_rows_of_numbers(tmp_path):
    """The seed's linear regression: predict gives values close to the data's own targets."""
    from ftool.data.tabular import regression

    run = tmp_path / "run"
    result = ftool("train", "experiment=regression_linear", "trainer.epochs=20", "optimizer.momentum=0.9",
                   f"hydra.run.dir={run}", cwd=tmp_path)  # (converged in 20 epochs with momentum)
    assert result.returncode == 0, result.stderr
    test = regression().test  # the run's data (same seed): rows it never trained on
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(",".join(f"{v:.6f}" for v in x.tolist()) + "\n" for x, _ in test) + "\n")
    predicted = json.loads(ftool("predict", f"ckpt={run}", f"input={rows}", "output=json", cwd=tmp_path).stdout)
    targets = [y.item() for _, y in test]
    assert len(predicted) == len(targets) == 200
    errors = [abs(p["prediction"] - t) for p, t in zip(predicted, targets)]
    assert sum(errors) / len(errors) < 0.15  # the data's noise is 0.1: about 0.08 on average
    assert predicted[0]["input"] == rows.read_text().splitlines()[0]

    spaced = " ".join(f"{v:.6f}" for v in test[0][0].tolist())  # one row given on the command line
    table = ftool("predict", f"ckpt={run}", f"input={spaced}", cwd=tmp_path)
    assert table.returncode == 0 and f"{predicted[0]['prediction']:.6g}" in table.stdout
    rows = list(csv.reader(io.StringIO(ftool("predict", f"ckpt={run}", f"input={spaced}", "output=csv",
                                              cwd=tmp_path).stdout)))
    assert rows[0] == ["input", "prediction"] and rows[1][0] == spaced
    assert float(rows[1][1]) == pytest.approx(predicted[0]["prediction"])

    # NumPy's own file (np.save), as scikit-learn users have their rows; read without pickles
    np.save(tmp_path / "rows.npy", np.stack([x.numpy() for x, _ in test]))
    arrays = json.loads(ftool("predict", f"ckpt={run}", "input=rows.npy", "output=json", cwd=tmp_path).stdout)
    assert [a["input"] for a in arrays[:2]] == ["rows.npy[0]", "rows.npy[1]"]
    assert [a["prediction"] for a in arrays] == pytest.approx([p["prediction"] for p in predicted], abs=1e-5)
    np.save(tmp_path / "wide.npy", np.zeros((2, 3)))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert_one_line_error(ftool("predict", f"ckpt={run}", "input=wide.npy", cwd=tmp_path),
                          "input: wide.npy holds an array of shape (2, 3), rows of 3 numbers; this run's model takes")
    assert_one_line_error(ftool("predict", f"ckpt={run}", "input=objects.npy", cwd=tmp_path),
                          "input: objects.npy is not a NumPy array of numbers (Object arrays cannot be loaded when "
                          "allow_pickle=False)")



def test_a_regression_of_several_targets_names_its_columns_by_them():
    from ftool.commands.predict import _csv, _value_names
    from ftool.data import DataInfo

    results = [{"input": "1,2", "prediction": [3.0, 4.0]}]
    table = DataInfo("regression", (2,), 2, columns={"features": ["a", "b"], "target": ["rent", "deposit"]})
    assert _csv(results, _value_names(table)) == 'input,rent,deposit\n"1,2",3.0,4.0\n'
    vectors = DataInfo("regression", (2,), 2)  # (data=regression: no names)
    assert _csv(results, _value_names(vectors)).splitlines()[0] == "input,prediction[0],prediction[1]"


def test_a_table_run_reads_new_tables_by_column_name_and_scales_them_as_it_trained(tmp_path):
    """Weights in grams and heights in metres: learnable because each column is standardized by the
    training table's mean and spread, which eval, predict and the exported model keep for new tables."""
    rng = np.random.default_rng(0)
    kind = rng.integers(0, 2, 200)
    grams, metres = 1000 + 800 * kind + rng.normal(0, 150, 200), 0.5 + 0.3 * kind + rng.normal(0, 0.05, 200)
    lines = [f"{g:.1f},{m:.3f},{['small', 'big'][k]}" for g, m, k in zip(grams, metres, kind)]
    (tmp_path / "animals.csv").write_text("grams,metres,kind\n" + "\n".join(lines) + "\n")
    run = tmp_path / "run"
    result = ftool("train", "model=linear", "data=table", "data.path=animals.csv", "trainer.epochs=5",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["metrics"]["test/accuracy"] >= 0.95
    # New animals, big ones only (their own mean would shift them), in other columns and order.
    (tmp_path / "big.csv").write_text("id,metres,kind,grams\n1,0.81,big,1790\n2,0.78,big,1850\n3,0.83,big,1760\n")
    result = ftool("eval", f"ckpt={run}", "data.path=big.csv", "split=all", cwd=tmp_path)
    assert result.returncode == 0 and "all/accuracy  │ 1.0000" in result.stdout, result.stdout + result.stderr
    predicted = json.loads(ftool("predict", f"ckpt={run}", "input=big.csv", "output=json", cwd=tmp_path).stdout)
    assert [p["input"] for p in predicted] == ["1790,0.81", "1850,0.78", "1760,0.83"]  # grams, metres: its order
    assert [p["label"] for p in predicted] == ["big"] * 3

    exported = tmp_path / "model.pt2"  # takes the numbers as they are: the scaling is inside
    assert ftool("export", f"ckpt={run}", "format=pt2", f"out={exported}", cwd=tmp_path).returncode == 0
    graph = torch.export.load(exported).module()
    probabilities = graph(torch.tensor([[1790.0, 0.81]])).softmax(-1)[0].tolist()
    assert probabilities == pytest.approx([predicted[0]["probabilities"][name] for name in ("big", "small")], abs=1e-5)


def test_a_table_regression_learns_prices_standardized_and_answers_in_their_units(tmp_path):
    """An MLP with Adam (the defaults) on house prices: Adam's steps are about the LR in size, so on
    the prices as they are its outputs would take a hundred thousand steps to reach them (R2 < 0);
    standardized, it fits, and every output (eval's metrics, predict, exports) is in the target's units."""
    rng = np.random.default_rng(0)
    area = rng.uniform(50, 250, 300)
    price = 50_000 + 2_000 * area + rng.normal(0, 5_000, 300)
    (tmp_path / "houses.csv").write_text("area,price\n" + "".join(f"{a:.1f},{p:.0f}\n" for a, p in zip(area, price)))
    run = tmp_path / "run"
    result = ftool("train", "model=mlp", "data=table", "data.path=houses.csv", "trainer.epochs=20",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert summary["metrics"]["test/r2"] > 0.99 and summary["metrics"]["test/mae"] < 6_000
    assert summary["metrics"]["test/loss"] < 0.02  # the MSE in units of the price's std
    # the training rows' mean and std: a random 80% of the table's
    assert summary["data"]["target_mean"] == pytest.approx([price.mean()], rel=0.05)
    assert summary["data"]["target_std"] == pytest.approx([price.std()], rel=0.1)

    (tmp_path / "new.csv").write_text("area,price\n100,250000\n200,450000\n")
    result = ftool("eval", f"ckpt={run}", "data.path=new.csv", "split=all", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scored = read_json(run / "eval.json")["metrics"]
    predicted = json.loads(ftool("predict", f"ckpt={run}", "input=new.csv", "output=json", cwd=tmp_path).stdout)
    values = [p["prediction"] for p in predicted]
    assert values == pytest.approx([250_000, 450_000], abs=5_000)
    assert scored["all/mae"] == pytest.approx((abs(values[0] - 250_000) + abs(values[1] - 450_000)) / 2, abs=1)

    exported = tmp_path / "model.onnx"  # area in, price out: both scalings are inside the graph
    result = ftool("export", f"ckpt={run}", "format=onnx", f"out={exported}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    session = onnxruntime.InferenceSession(str(exported))
    out = session.run(None, {session.get_inputs()[0].name: np.array([[100.0], [200.0]], dtype=np.float32)})[0]
    assert out.flatten().tolist() == pytest.approx(values, rel=1e-5)

    raw = tmp_path / "raw"  # data.normalize=false: the targets as they are, the loss their MSE
    result = ftool("train", "model=mlp", "data=table", "data.path=houses.csv", "data.normalize=false",
                   "trainer.epochs=1", f"hydra.run.dir={raw}", cwd=tmp_path)
    summary = read_json(raw / "summary.json")
    assert summary["data"]["target_mean"] is None and summary["metrics"]["test/loss"] > 1e10
    assert summary["metrics"]["test/loss"] == pytest.approx(summary["metrics"]["test/mse"], rel=1e-4)


def test_a_table_run_with_categories_predicts_from_their_names(tmp_path):
    """Rent by city and area: the city is one-hot encoded by the training table's cities, and new
    rows (a table by column name, or values by position) are encoded as it was."""
    rng = np.random.default_rng(0)
    cities, base = ["Berlin", "Paris", "Rome"], {"Berlin": 1000, "Paris": 2000, "Rome": 1500}
    rows = [(rng.choice(cities), rng.uniform(20, 120)) for _ in range(400)]
    (tmp_path / "rents.csv").write_text("city,area,rent\n" + "".join(
        f"{c},{a:.0f},{base[c] + 10 * a + rng.normal(0, 20):.0f}\n" for c, a in rows))
    run = tmp_path / "run"
    result = ftool("train", "model=linear", "optimizer=sgd", "data=table", "data.path=rents.csv", "trainer.epochs=20",
                   "data.missing=fill", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "summary.json")["metrics"]["test/r2"] > 0.99

    (tmp_path / "new.csv").write_text("area,city\n50,Paris\n50,Madrid\n")
    result = ftool("predict", f"ckpt={run}", "input=new.csv", "input=Rome,100", "input=Berlin,NA", "output=json",
                   cwd=tmp_path)
    predicted = json.loads(result.stdout)  # the warning about Madrid is on stderr
    assert [p["input"] for p in predicted] == ["Paris,50", "Madrid,50", "Rome,100", "Berlin,NA"]
    assert predicted[0]["prediction"] == pytest.approx(2500, abs=50)
    assert predicted[2]["prediction"] == pytest.approx(2500, abs=50)
    # data.missing=fill: the missing area is the training rows' mean, about the whole table's
    assert predicted[3]["prediction"] == pytest.approx(1000 + 10 * np.mean([a for _, a in rows]), abs=60)
    assert "'city' has values the training table has not (Madrid)" in result.stderr
    result = ftool("predict", f"ckpt={run}", "input=Paris", cwd=tmp_path)
    assert_one_line_error(result, "input: 'Paris' has 1 values; this run's model takes 2 (city, area)")
    np.save(tmp_path / "encoded.npy", np.zeros((1, 4)))  # (numbers by position: no city by its name)
    assert_one_line_error(ftool("predict", f"ckpt={run}", "input=encoded.npy", cwd=tmp_path),
                          "input: encoded.npy: a NumPy file holds numbers by position, and this run's table had "
                          "columns of words (city); give a table with a header (CSV, TSV, JSON)")
    rows_kept = tmp_path / "kept"  # trained without filling: a missing value given to predict is an error
    ftool("train", "model=linear", "data=table", "data.path=rents.csv", "trainer.max_steps=1", "trainer.validate=false",
          f"hydra.run.dir={rows_kept}", cwd=tmp_path)
    result = ftool("predict", f"ckpt={rows_kept}", "input=Paris,", cwd=tmp_path)
    assert_one_line_error(result, "'area' is '', a missing value (give a value: the run was trained without "
                                  "data.missing=fill)")
    # a table of one city evaluates with the run's three (its own one would make another shape)
    (tmp_path / "paris.csv").write_text("city,area,rent\nParis,50,2500\nParis,100,3000\n")
    result = ftool("eval", f"ckpt={run}", "data.path=paris.csv", "split=all", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_json(run / "eval.json")["metrics"]["all/mae"] < 50


def test_feature_vector_inputs_are_checked_row_by_row(tmp_path):
    from ftool.inference import vector_inputs

    assert vector_inputs("0.5, 1 -2", 3) == [("0.5, 1 -2", [0.5, 1.0, -2.0])]  # commas or spaces
    assert vector_inputs("[0.5, 1, -2]", 3)[0][1] == vector_inputs("[0.5 1. -2.]", 3)[0][1] == [0.5, 1.0, -2.0]  # lists
    rows = tmp_path / "printed.txt"  # as Python and NumPy print rows
    rows.write_text("[1, 2, 3]\n[4. 5. 6.]\n")
    assert [numbers for _, numbers in vector_inputs(str(rows), 3)] == [[1, 2, 3], [4, 5, 6]]
    many = ",".join(["0.123456789"] * 30)  # longer than a file name may be
    assert vector_inputs(many, 30) == [(many, [0.123456789] * 30)]
    table = tmp_path / "table.csv"  # a table run reads a header's columns by name, in any order
    table.write_text("z,x,y\n3,1,2\n")
    assert vector_inputs(str(table), 3, {"features": ["x", "y", "z"]}) == [("1,2,3", [1.0, 2.0, 3.0])]
    table.write_text("a,b,c\n1,2,3\n")  # other names: not read by position
    with pytest.raises(FtoolError, match="table.csv row 1 has no column 'x'; its columns: a, b, c"):
        vector_inputs(str(table), 3, {"features": ["x", "y", "z"]})
    table.write_text("1,2,3\n4,5,6\n")  # no header: numbers by position, as for any vector run
    assert [numbers for _, numbers in vector_inputs(str(table), 3, {"features": ["x", "y", "z"]})] == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(FtoolError, match="input: '1,2' has 2 numbers; this run's model takes 10"):
        vector_inputs("1,2", 10)
    with pytest.raises(FtoolError, match="input: 'rows.cvs' is neither a file nor numbers"):  # a mistyped file name
        vector_inputs("rows.cvs", 10)
    rows = tmp_path / "rows.csv"
    rows.write_text("1,2,3\n\n4,5,x\n")
    with pytest.raises(FtoolError, match=r"input: .*rows.csv line 3: '4,5,x' is not numbers"):
        vector_inputs(str(rows), 3)
    rows.write_text("x1,x2,x3\n1,2,3\n")  # a header: skipped, as it has no number
    assert vector_inputs(str(rows), 3) == [("1,2,3", [1.0, 2.0, 3.0])]
    rows.write_text("1,2,x\n1,2,3\n")  # a first row with numbers is data, and wrong
    with pytest.raises(FtoolError, match=r"input: .*rows.csv line 1: '1,2,x' is not numbers"):
        vector_inputs(str(rows), 3)
