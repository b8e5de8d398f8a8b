"""predict and export of image and table models; eval on new data."""

import csv
import io
import json

import numpy as np
import pytest

from tests.conftest import one_line_error, read_json, write_image_folder

FAST = ("trainer.progress=false",)


@pytest.fixture
def image_run(cli, tmp_path):
    write_image_folder(tmp_path / "imgs", per_class=10)
    result = cli("train", "data=imagefolder", "data.root=imgs", "data.num_workers=0", "trainer.epochs=8",
                 "model.padding=2", "hydra.run.dir=runs/img", *FAST)
    assert result.code == 0, result.err
    return tmp_path / "runs" / "img"


def test_predict_labels_image_files_folders_and_patterns(cli, tmp_path, image_run):
    result = cli("predict", f"ckpt={image_run}", "input=imgs/cat/0.png", "input=imgs/dog", "input=imgs/cat/1*.png",
                 "output=json")
    found = {r["input"]: r["label"] for r in json.loads(result.out)}
    assert found["imgs/cat/0.png"] == "cat" and found["imgs/cat/1.png"] == "cat" and len(found) == 12, result.err
    assert {label for name, label in found.items() if "/dog/" in name} == {"dog"}
    rows = list(csv.DictReader(io.StringIO(cli("predict", f"ckpt={image_run}", "input=imgs/cat/0.png",
                                               "output=csv").out)))
    assert list(rows[0]) == ["input", "label", "p(cat)", "p(dog)"]


def test_exports_give_the_checkpoints_outputs_and_never_replace_the_runs_records(cli, image_run):
    for format in ("safetensors", "torchscript", "pt2", "onnx"):
        result = cli("export", f"ckpt={image_run}", f"format={format}")
        assert result.code == 0 and "max |difference|" in result.out, result.err
    assert sorted(p.name for p in (image_run / "export").iterdir()) == [
        "model.onnx", "model.pt", "model.pt2", "model.safetensors"]
    one_line_error(cli("export", f"ckpt={image_run}", f"out={image_run}/summary.json"), "the run's own records")


def test_eval_on_new_images_labels_them_by_the_runs_class_names(cli, tmp_path, image_run):
    write_image_folder(tmp_path / "new", classes=("cat",), per_class=4)
    result = cli("eval", f"ckpt={image_run}", "data.root=new", "split=all")
    assert result.code == 0, result.err
    evaluated = read_json(image_run / "eval.json")
    assert evaluated["per_class"]["support"] == [4, 0] and evaluated["metrics"]["all/accuracy"] == 1.0
    write_image_folder(tmp_path / "other", classes=("bird", "dog"), per_class=2)
    one_line_error(cli("eval", f"ckpt={image_run}", "data.root=other", "split=all"), "classes bird are not the run's")
    one_line_error(cli("eval", f"ckpt={image_run}", "data.split_seed=4"), "eval split=test keeps the run's data.split_seed=0")


def test_a_table_run_predicts_new_rows_by_column_name_in_the_targets_units(cli, tmp_path):
    rng = np.random.default_rng(0)
    area, rooms = rng.uniform(20, 200, 300), rng.integers(1, 6, 300)
    city = rng.choice(["paris", "lyon"], 300)
    price = 3000 * area + 20000 * rooms + np.where(city == "paris", 100000, 0)
    with open(tmp_path / "houses.csv", "w") as f:
        f.write("area,city,rooms,price\n" + "".join(f"{a:.1f},{c},{r},{p:.0f}\n" for a, c, r, p in zip(area, city, rooms, price)))
    result = cli("train", "data=table", "data.path=houses.csv", "model=linear", "optimizer.lr=0.05",
                 "trainer.epochs=40", "hydra.run.dir=runs/houses", *FAST)
    assert result.code == 0 and "price (regression) from 3 columns; one-hot: city" in result.out, result.err
    (tmp_path / "new.csv").write_text("rooms,city,area\n2,paris,100\n")
    np.save(tmp_path / "rows.npy", np.array([[100.0, 1.0, 0.0, 2.0]]))  # (encoded already: area, lyon, paris, rooms)
    result = cli("predict", "ckpt=runs/houses", "input=new.csv", "input=100,paris,2", "output=json")
    predictions = [r["prediction"] for r in json.loads(result.out)]
    assert predictions == pytest.approx([440000] * 2, rel=0.02), result.err


def test_a_regression_run_takes_rows_of_numbers(cli, tmp_path):
    assert cli("train", "model=linear", "data=regression", "trainer.epochs=20", "hydra.run.dir=lin", *FAST).code == 0
    (tmp_path / "rows.txt").write_text("x0,x1,x2,x3,x4,x5,x6,x7,x8,x9\n" + ",".join(["0"] * 10) + "\n")
    np.save(tmp_path / "rows.npy", np.zeros((2, 10)))
    result = cli("predict", "ckpt=lin", "input=" + " ".join(["0.5"] * 10), "input=rows.txt", "input=rows.npy",
                 "output=json")
    results = json.loads(result.out)
    assert len(results) == 4 and results[1]["prediction"] == pytest.approx(results[2]["prediction"]), result.err
