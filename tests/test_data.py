"""Datasets in their real on-disk formats, held-out splits, transforms, tables and texts."""

import pickle

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from ftool.cli.args import config_root
from ftool.components import build_data
from ftool.config import validate
from ftool.data.classes import labels_of
from ftool.data.loaders import EpochSampler, TensorLoader
from ftool.data.text import PadBatch, TokenizedTexts
from ftool.registry import DATASETS
from tests.conftest import write_cifar10, write_image_folder, write_mnist


def loaders(*overrides: str):
    with initialize_config_dir(str(config_root()), version_base="1.3"):
        rc = validate(compose("config", overrides=list(overrides)))
    return build_data(rc), rc


def test_cifar10_and_mnist_read_their_real_formats(tmp_path):
    write_cifar10(tmp_path)
    write_mnist(tmp_path)
    cifar = DATASETS.build("cifar10", {"root": str(tmp_path)})
    assert len(cifar.train) == 100 and len(cifar.test) == 30 and cifar.train[0][0].dtype == torch.uint8
    assert cifar.info.input_shape == (3, 32, 32) and cifar.info.class_names[0] == "airplane"
    mnist = DATASETS.build("mnist", {"root": str(tmp_path)})
    assert mnist.train[0][0].shape == (1, 28, 28) and len(mnist.test) == 20 and len(mnist.info.class_names) == 10


def test_a_cifar_file_that_would_run_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        DATASETS.build("cifar10", {"root": str(tmp_path)})


def test_image_folders_with_split_folders_hidden_files_and_resizing(tmp_path):
    write_image_folder(tmp_path / "imgs" / "train")
    write_image_folder(tmp_path / "imgs" / "test", classes=("dog",), per_class=3)
    (tmp_path / "imgs" / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "imgs" / "train" / "cat" / "._0.png").write_bytes(b"macOS metadata")
    splits = DATASETS.build("imagefolder", {"root": str(tmp_path / "imgs"), "image_size": [6, 5]})
    assert splits.info.class_names == ["cat", "dog"] and len(splits.train) == 12
    assert labels_of(splits.test) == [1, 1, 1] and splits.train[0][0].shape == (3, 6, 5)


def test_photos_are_read_upright_as_their_exif_orientation_says(tmp_path):
    from PIL import Image

    from ftool.data.vision import read_image

    image = Image.new("RGB", (4, 2))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: the photo is upright when turned
    image.save(tmp_path / "photo.jpg", exif=exif)
    assert read_image(tmp_path / "photo.jpg", 3, (4, 2)).shape == (3, 4, 2)


def test_held_out_splits_are_disjoint_fixed_by_split_seed_and_folds_hold_each_sample_out_once():
    def held(*overrides):
        made, _ = loaders("data.loader=dataloader", *overrides)  # (its splits are views by index)
        return [set(made.test.dataset.indices), set(made.val.dataset.indices), set(made.train.dataset.indices)]

    test, val, train = held()
    assert not (test & val or test & train or val & train) and len(test | val | train) == 1797
    assert held()[0] == test and held("data.split_seed=1")[0] != test
    folds = [held("data.folds=3", f"data.fold={k}")[0] for k in range(3)]
    assert set.union(*folds) == set(range(1797)) and sum(map(len, folds)) == 1797


def test_augmentation_changes_training_images_only_per_sample_or_per_batch(tmp_path):
    write_cifar10(tmp_path)
    made, _ = loaders("data=cifar10", f"data.root={tmp_path}", "data.loader=dataloader")
    torch.manual_seed(0)
    assert not torch.equal(made.train.dataset[0][0], made.train.dataset[0][0])
    assert torch.equal(made.test.dataset[0][0], made.test.dataset[0][0])
    made, _ = loaders("data=cifar10", f"data.root={tmp_path}")  # (the default: tensors, augmented per batch)
    assert isinstance(made.train, TensorLoader) and made.train.transform is not None
    first, again = next(iter(made.train))[0], next(iter(made.train))[0]  # the same samples, augmented anew
    assert first.shape == again.shape and first.shape[1:] == (3, 32, 32) and not torch.equal(first, again)
    assert torch.equal(next(iter(made.test))[0], next(iter(made.test))[0])


def test_batch_augmentation_draws_crops_and_flips_as_the_per_sample_transforms_do():
    from torchvision.transforms import v2

    from ftool.config import DataConfig
    from ftool.data import DataInfo
    from ftool.data.transforms import BatchAugment

    cfg = DataConfig(normalize=False)
    cfg.augment.crop_padding, cfg.augment.hflip = 2, True
    image = torch.rand(3, 8, 8)
    torch.manual_seed(0)
    batched = BatchAugment(cfg, DataInfo("classification", (3, 8, 8), 2))(image.expand(4000, 3, 8, 8))
    per_sample = v2.Compose([v2.RandomCrop([8, 8], padding=2), v2.RandomHorizontalFlip()])
    single = torch.stack([per_sample(image) for _ in range(4000)])
    assert (batched.mean(0) - single.mean(0)).abs().max() < 0.05  # the same expected image, pixel by pixel
    assert abs((batched == 0).float().mean() - (single == 0).float().mean()) < 0.01  # as much padding shows


def test_a_table_predicts_its_last_column_or_those_named_with_words_one_hot_encoded(tmp_path):
    (tmp_path / "houses.csv").write_text("city,rooms,area,price\n" + "".join(
        f"{'paris' if i % 2 else 'lyon'},{i % 5 + 1},{50 + i},{100 + 10 * i}\n" for i in range(40)))
    splits = DATASETS.build("table", {"path": str(tmp_path / "houses.csv")})
    info = splits.info
    assert info.task == "regression" and info.columns["features"] == ["city", "rooms", "area"]
    assert info.columns["categorical"] == {"city": ["lyon", "paris"]} and info.input_shape == (4,)
    assert splits.train[1][0][:2].tolist() == [0.0, 1.0] and splits.train[1][1].tolist() == [110.0]
    named = DATASETS.build("table", {"path": str(tmp_path / "houses.csv"), "target": "city", "features": ["area"]})
    assert named.info.task == "classification" and named.info.class_names == ["lyon", "paris"]
    again = DATASETS.build("table", {"path": str(tmp_path / "houses.csv"), "run_columns": info.columns})
    assert torch.equal(again.train.tensors[0], splits.train.tensors[0])


def test_a_tables_missing_values_are_an_error_dropped_or_filled(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,,0\n2,4,1\n3,6,0\n,8,1\n")
    with pytest.raises(Exception, match="column 'a' has 1 missing values"):
        DATASETS.build("table", {"path": str(tmp_path / "t.csv")})
    assert len(DATASETS.build("table", {"path": str(tmp_path / "t.csv"), "missing": "drop"}).train) == 2
    filled = DATASETS.build("table", {"path": str(tmp_path / "t.csv"), "missing": "fill"})
    assert filled.train.tensors[0][3].tolist() == [2.0, 8.0] and filled.info.columns["missing"]["b"] == 6.0


def test_text_files_name_their_classes_by_file_or_folder(tmp_path, tiny_bert, sentiment_files):
    from ftool.models.hf import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    by_file = DATASETS.build("text_files", {"root": str(sentiment_files)}, tokenizer=tokenizer)
    assert by_file.info.class_names == ["neg", "pos"] and len(by_file.train) == 300 and by_file.info.text
    for split, n in (("train", 3), ("test", 2)):
        for name in ("neg", "pos"):
            (tmp_path / "imdb" / split / name).mkdir(parents=True)
            for i in range(n):
                (tmp_path / "imdb" / split / name / f"{i}.txt").write_text(f"a {name} film {i}")
    (tmp_path / "imdb" / "README").write_text("not a review")
    by_folder = DATASETS.build("text_files", {"root": str(tmp_path / "imdb")}, tokenizer=tokenizer)
    assert by_folder.info.class_names == ["neg", "pos"] and (len(by_folder.train), len(by_folder.test)) == (6, 4)


def test_text_tables_label_by_name_or_number_in_csv_json_and_parquet(tmp_path, tiny_bert):
    import pandas as pd

    from ftool.models.hf import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_bert))
    frame = pd.DataFrame({"review": ["a great film", "", "a dull film", "fun"], "stars": [5, 3, 1, 5]})
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "r.parquet")
    for name in ("r.csv", "r.jsonl", "r.parquet"):
        splits = DATASETS.build("text_csv", {"path": str(tmp_path / name), "text_column": "review",
                                             "label_column": "stars"}, tokenizer=tokenizer)
        assert splits.info.class_names == ["1", "5"] and labels_of(splits.train) == [1, 0, 1], name


def test_tokenized_texts_are_cached_padded_and_grouped_by_length(tmp_path, tiny_bert, monkeypatch):
    from ftool.data.text import tokenize
    from ftool.models.hf import load_tokenizer

    monkeypatch.setenv("FTOOL_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer = load_tokenizer(str(tiny_bert))
    first = tokenize(["a great film", "dull"], tokenizer, 16)
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 1
    assert all(torch.equal(a, b) for a, b in zip(first, tokenize(["a great film", "dull"], tokenizer, 16)))
    batch, labels = PadBatch(0)([(torch.tensor([1, 2, 3]), 0), (torch.tensor([4]), 1)])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]] and batch["attention_mask"][1].tolist() == [1, 0, 0]
    lengths = list(np.random.default_rng(0).integers(1, 50, 400))
    sampler = EpochSampler(400, seed=0, lengths=lengths, batch_size=8)
    order = list(sampler)
    assert sorted(order) == list(range(400))
    spread = np.mean([np.ptp([lengths[i] for i in order[k:k + 8]]) for k in range(0, 400, 8)])
    assert spread < 5  # batches of about one length (random batches: ~40)
    assert TokenizedTexts([torch.ones(3)], torch.tensor([0])).lengths() == [3]


def test_data_classes_keep_some_classes_relabelled_in_order():
    made, _ = loaders("data.classes=[5,6,7]")
    assert made.info.class_names == ["5", "6", "7"] and made.info.num_outputs == 3
    assert set(labels_of(made.train.dataset)) == {0, 1, 2}
