import pickle
import re
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from ftool.config import AugmentConfig, DataConfig, TrainerConfig
from ftool.data import DataInfo, Splits
from ftool.data.loaders import build_loaders
from ftool.data.samples import sample_reader
from ftool.errors import FtoolError
from ftool.registry import DATASETS
from tests.conftest import closed_port
from tests.dataset_files import write_cifar10, write_cifar100, write_image_folder, write_mnist


def loaders(name, seed=0, **args):
    common = {k: args.pop(k) for k in list(args) if k in ("val_fraction", "test_fraction", "split_seed",
                                                            "augment", "batch_size", "normalize",
                                                            "pin_memory", "folds", "fold", "test_size")}
    cfg = DataConfig(name=name, **common)
    return build_loaders(cfg, DATASETS.build(name, args), seed=seed)


def all_samples(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_cifar10_reads_the_pickled_batches(tmp_path):
    write_cifar10(tmp_path)
    data = loaders("cifar10", root=str(tmp_path), val_fraction=0.1)
    info = data.info
    assert info.input_shape == (3, 32, 32) and info.num_outputs == 10 and info.class_names[0] == "airplane"
    assert len(data.train.dataset) == 90 and len(data.val.dataset) == 10 and len(data.test.dataset) == 30
    x, y = all_samples(data.test)
    assert x.dtype == torch.float32 and x.shape == (30, 3, 32, 32)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert y.tolist() == raw["labels"]
    first = torch.tensor(raw["data"][0].reshape(3, 32, 32), dtype=torch.float32) / 255
    mean, std = torch.tensor(info.mean)[:, None, None], torch.tensor(info.std)[:, None, None]
    assert torch.allclose(x[0], (first - mean) / std, atol=1e-5)


def test_cifar100_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    data = loaders("cifar100", root=str(tmp_path))
    assert data.info.num_outputs == 100 and data.info.class_names[99] == "class99"
    assert len(data.test.dataset) == 20


def test_a_cifar_file_that_would_run_code_is_refused(tmp_path):
    write_cifar10(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(FtoolError, match="refusing to load builtins.print"):
        loaders("cifar10", root=str(tmp_path))


@pytest.mark.parametrize("damaged", ["data_batch_3", "batches.meta"])
def test_a_damaged_cifar_file_is_named(tmp_path, damaged):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / damaged
    path.write_bytes(path.read_bytes()[:100])  # a copy cut short
    with pytest.raises(FtoolError, match=f"data: {path} is not a CIFAR file"):
        loaders("cifar10", root=str(tmp_path))


def test_pin_memory_without_an_accelerator_is_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, _ = next(iter(loaders("digits", pin_memory=True).train))
    assert x.is_pinned() == torch.accelerator.is_available()


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats(tmp_path, name, folder):
    write_mnist(tmp_path, folder=folder)
    data = loaders(name, root=str(tmp_path), val_fraction=0.2)
    assert data.info.input_shape == (1, 28, 28) and data.info.num_outputs == 10
    assert len(data.train.dataset) == 40 and len(data.val.dataset) == 10 and len(data.test.dataset) == 20
    assert next(iter(data.train))[0].shape[1:] == (1, 28, 28)


def test_mnist_files_as_downloaded_gzipped_are_unpacked(tmp_path):
    import gzip

    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    plain = {f.name: f.read_bytes() for f in raw.iterdir()}
    for name, data in plain.items():
        (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        (raw / name).unlink()
    data = loaders("mnist", root=str(tmp_path), val_fraction=0.2)
    assert len(data.train.dataset) == 40 and len(data.test.dataset) == 20
    assert {name: (raw / name).read_bytes() for name in plain} == plain

    (raw / "t10k-images-idx3-ubyte").unlink()
    packed = raw / "t10k-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:50])  # a download cut short
    with pytest.raises(FtoolError, match=f"data: {packed} is not a whole gzip file"):
        loaders("mnist", root=str(tmp_path))


def test_missing_dataset_names_the_files_and_how_to_get_them(tmp_path):
    with pytest.raises(FtoolError) as info:
        loaders("mnist", root=str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "MNIST not found under data.root=" in message and "train-images-idx3-ubyte" in message
    assert "data.download=true" in message and "\n" not in message


def test_a_failed_download_is_one_line_quoting_every_mirror_tried(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    port = closed_port()  # the download is refused at once
    mirrors = [f"http://127.0.0.1:{port}/a/", f"http://127.0.0.1:{port}/b/"]
    monkeypatch.setattr(tvd.MNIST, "mirrors", mirrors)
    with pytest.raises(FtoolError) as info:
        loaders("mnist", root=str(tmp_path), download=True)
    message = str(info.value)
    assert message.startswith("data: downloading MNIST into") and "copy the files there by hand" in message
    assert "\n" not in message and all(m in message for m in mirrors)  # torchvision's lines, joined


def test_imagefolder_with_split_fraction(tmp_path):
    write_image_folder(tmp_path / "pets", per_class=10)
    # Hidden folders and files are not data: Jupyter's checkpoints, macOS's metadata beside a photo.
    write_image_folder(tmp_path / "pets" / ".ipynb_checkpoints", per_class=1)
    shutil.copytree(tmp_path / "pets" / ".ipynb_checkpoints" / "cat", tmp_path / "pets" / "cat" / ".ipynb_checkpoints")
    (tmp_path / "pets" / "dog" / "._0.png").write_bytes(b"\0\5\26\7")
    data = loaders("imagefolder", root=str(tmp_path / "pets"), val_fraction=0.25, test_fraction=0.2)
    assert data.info.class_names == ["cat", "dog"] and data.info.input_shape == (3, 12, 10)
    sizes = [len(d.dataset) for d in (data.train, data.val, data.test)]
    assert sizes == [12, 4, 4]


def test_imagefolder_with_train_val_test_dirs_and_resize(tmp_path):
    for split in ("train", "val", "test"):
        write_image_folder(tmp_path / split, per_class=3)
    data = loaders("imagefolder", root=str(tmp_path), image_size=[8, 8])
    assert [len(d.dataset) for d in (data.train, data.val, data.test)] == [6, 6, 6]
    assert next(iter(data.test))[0].shape[1:] == (3, 8, 8)
    square = loaders("imagefolder", root=str(tmp_path), image_size=8)  # one number: a square (it was a traceback)
    assert square.info.input_shape == (3, 8, 8)
    for bad in ([0, 0], [8]):  # torch's traceback at the first resize, before
        with pytest.raises(FtoolError, match=re.escape(f"data.image_size: expected a list of 2 positive sizes such "
                                                        f"as [32,32], got {bad}")):
            loaders("imagefolder", root=str(tmp_path), image_size=bad)


def test_an_imagefolder_test_dir_may_hold_some_of_the_classes_labelled_as_train_labels_them(tmp_path):
    write_image_folder(tmp_path / "train", classes=("cat", "dog", "fox"), per_class=3)
    write_image_folder(tmp_path / "test", classes=("fox",), per_class=2)  # no cat or dog photos yet
    data = loaders("imagefolder", root=str(tmp_path), val_fraction=0)
    assert data.info.class_names == ["cat", "dog", "fox"]
    assert all_samples(data.test)[1].tolist() == [2, 2]  # fox is class 2, as in training (not 0)
    write_image_folder(tmp_path / "val", classes=("cat", "wolf"), per_class=1)
    with pytest.raises(FtoolError, match=r"data.root: .*val has classes the train data has not: wolf "
                                         r"\(train: cat, dog, fox\)"):
        loaders("imagefolder", root=str(tmp_path))


def test_16_bit_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    from PIL import Image

    for name, value in (("dark", 10_000), ("bright", 60_000)):  # of 65,535
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((4, 4), value, dtype=np.uint16)).save(tmp_path / name / "scan.png")
    for grayscale in (True, False):
        data = loaders("imagefolder", root=str(tmp_path), grayscale=grayscale, val_fraction=0,
                       test_fraction=0.5, normalize=False)
        pixels = {data.info.class_names[y]: x.unique().tolist() for x, y in zip(*all_samples(data.everything))}
        assert pixels == {"dark": [pytest.approx(39 / 255)], "bright": [pytest.approx(233 / 255)]}


def test_photos_are_read_upright_as_their_exif_orientation_says(tmp_path):
    from PIL import Image

    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0] = 255  # the top row white, as stored: 4 high, 6 wide
    photo = Image.fromarray(pixels)
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise, as a phone stores a portrait photo
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        photo.save(tmp_path / name / "photo.png", exif=exif)
    data = loaders("imagefolder", root=str(tmp_path), val_fraction=0, test_fraction=0.5, normalize=False)
    assert data.info.input_shape == (3, 6, 4)  # upright: 6 high, 4 wide
    x, _ = all_samples(data.test)
    assert x[0, 0, :, 3].eq(1).all() and x[0, 0, :, :3].eq(0).all()  # the white row is now the right column


def test_imagefolder_reads_images_in_the_formats_people_have_and_names_those_it_cannot(tmp_path, capsys):
    """A GIF or a .jfif (Windows' name for a saved web JPEG) was passed over in silence, and a class
    folder of an iPhone's .heic photos was torchvision's "Found no valid file for the classes ...". """
    from PIL import Image

    write_image_folder(tmp_path / "pets", per_class=2)
    for i, (name, suffix, format) in enumerate([("cat", ".gif", "GIF"), ("dog", ".jfif", "JPEG"), ("dog", ".JPE", "JPEG")]):
        Image.fromarray(np.full((12, 10, 3), 200 if name == "cat" else 40, dtype=np.uint8)).save(
            tmp_path / "pets" / name / f"more{i}{suffix}", format=format)
    (tmp_path / "pets" / "dog" / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    data = loaders("imagefolder", root=str(tmp_path / "pets"), val_fraction=0, test_fraction=0.5, normalize=False)
    assert len(data.everything.dataset) == 7  # 2 + 1 cats, 2 + 2 dogs: the HEIC photo left out, and said so
    assert capsys.readouterr().err.replace("\n", "") == \
        f"warning: data.root: {tmp_path / 'pets'}: left out 1 .heic file, which ftool cannot read (convert to JPEG or PNG)"
    (tmp_path / "pets" / "fox").mkdir()
    (tmp_path / "pets" / "fox" / "IMG_0002.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (tmp_path / "pets" / "fox" / "notes.txt").write_text("foxes")
    with pytest.raises(FtoolError) as info:
        loaders("imagefolder", root=str(tmp_path / "pets"))
    assert str(info.value) == (
        f"data.root: {tmp_path / 'pets' / 'fox'}: no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp .gif "
        f".jfif .jpe .avif .pbm .pnm .tga); it holds 1 .heic file, which ftool cannot read (convert to JPEG or PNG); "
        f"a class folder needs at least one")


def test_imagefolder_root_without_class_folders_says_the_layout(tmp_path):
    layout = "expected <root>/<class>/<image> or <root>/train/<class>/<image>"
    with pytest.raises(FtoolError, match=f"image folder .*none does not exist; {layout}"):
        loaders("imagefolder", root=str(tmp_path / "none"))
    (tmp_path / "photo.png").write_bytes(b"")
    with pytest.raises(FtoolError, match=f"image folder .*photo.png is a file; {layout}"):  # (not "does not exist")
        loaders("imagefolder", root=str(tmp_path / "photo.png"))
    (tmp_path / "train").mkdir()  # (was torchvision's "Couldn't find any class folder")
    with pytest.raises(FtoolError, match=f"data.root: .*train has no class folders; {layout}"):
        loaders("imagefolder", root=str(tmp_path))


def test_held_out_splits_are_disjoint_and_fixed_by_split_seed():
    def split_ids(split_seed):
        data = loaders("digits", split_seed=split_seed, normalize=False)
        return [tuple(d.dataset.indices) for d in (data.train, data.val, data.test)]

    train, val, test = split_ids(0)
    assert len(train) + len(val) + len(test) == 1797 and len(test) == round(1797 * 0.2)
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert split_ids(0) == [train, val, test]
    assert split_ids(1)[2] != test


def test_augmentation_changes_training_samples_only(tmp_path):
    write_cifar10(tmp_path)
    data = loaders("cifar10", root=str(tmp_path), normalize=False,
                   augment=AugmentConfig(crop_padding=4, hflip=True, rotation=10))
    train_view, val_view = data.train.dataset, data.val.dataset
    torch.manual_seed(0)
    assert not torch.equal(train_view[0][0], train_view[0][0])  # random each time
    assert torch.equal(val_view[0][0], val_view[0][0])
    raw_x, _ = val_view.base[val_view.indices[0]]
    assert torch.allclose(val_view[0][0], raw_x.float() / 255)


def test_augmentation_on_flat_data_is_an_error():
    with pytest.raises(FtoolError, match="augmentation needs image data"):
        loaders("regression", augment=AugmentConfig(hflip=True))


def test_samples_in_the_forms_a_dataset_of_ones_own_gives_them_are_read_as_the_model_and_loss_take_them():
    from PIL import Image

    classes = DataInfo("classification", (2,), 3, ["a", "b", "c"])
    x = np.array([0.5, 1.5])  # float64, as scikit-learn's and pandas' numbers are
    read = pickle.loads(pickle.dumps(sample_reader((x, 2), classes, "mine")))  # (as spawned DataLoader workers get it)
    for features in (x, [0.5, 1.5], torch.tensor(x), torch.tensor([0.5, 1.5])):
        for y in (2, torch.tensor(2), torch.tensor([2]), torch.tensor(2, dtype=torch.int32), torch.tensor(2.0),
                  np.int64(2), np.array([2], dtype=np.int32), 2.0):
            inputs, label = read((features, y))
            assert inputs.dtype == torch.float32 and torch.equal(inputs, torch.tensor([0.5, 1.5]))
            assert label == 2 and type(label) is int, y
    for y, says in ((3, "a sample's class is 3; the data has 3 classes, 0 to 2 (0: a, 1: b, 2: c)"),
                    (-1, "a sample's class is -1"), (0.5, "must be one whole number"), ("b", "got 'b'"),
                    (torch.tensor([0, 1]), "got Tensor of shape (2,)")):
        with pytest.raises(FtoolError, match=re.escape(says)):
            read((x, y))
    regression = sample_reader((x, 1.5), DataInfo("regression", (2,), 1), "mine")
    for y in (1.5, torch.tensor(1.5), torch.tensor([1.5], dtype=torch.float64), np.float64(1.5), [1.5]):
        assert torch.equal(regression((x, y))[1], torch.tensor([1.5])), y
    with pytest.raises(FtoolError, match=re.escape("data=mine: a sample's target holds 2 values and the data's "
                                                   "DataInfo.num_outputs is 1")):
        regression((x, [1.0, 2.0]))
    with pytest.raises(FtoolError, match="a sample's target must be numbers, got 'x'"):
        regression((x, "x"))
    # Images: PIL's (torchvision's datasets without a transform) and uint8 arrays stay uint8 (C, H, W)
    image = DataInfo("classification", (1, 4, 4), 2, ["a", "b"])
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    inputs, _ = sample_reader((Image.fromarray(gray, "L"), 0), image, "mine")((Image.fromarray(gray, "L"), 0))
    assert inputs.dtype == torch.uint8 and torch.equal(inputs, torch.from_numpy(gray)[None])
    inputs, _ = sample_reader((gray[None], 0), image, "mine")((gray[None], 0))
    assert inputs.dtype == torch.uint8
    photo = Image.fromarray(np.full((6, 6, 3), 200, dtype=np.uint8))  # RGB, another size: as image files are read
    inputs, _ = sample_reader((photo, 0), image, "mine")((photo, 0))
    assert inputs.shape == (1, 4, 4) and int(inputs.min()) == int(inputs.max()) == 200
    with pytest.raises(FtoolError, match=re.escape("a sample's input must be numbers (a tensor, an array, a list)")):
        sample_reader(({"pixels": 1}, 0), classes, "mine")
    for sample, says in (((gray, 0), "input has shape (4, 4) and the data's DataInfo.input_shape is (1, 4, 4); a "
                                     "grayscale image has one channel, (1, H, W): x.unsqueeze(0)"),
                         ((np.zeros((4, 4, 1), np.uint8), 0), "channels first, (C, H, W): x.permute(2, 0, 1)"),
                         ({"image": gray, "label": 0}, "a sample is a pair (input, target); got {'image'"),
                         ((gray, 0, "extra"), "a sample is a pair (input, target); got (array(")):
        with pytest.raises(FtoolError, match=re.escape(says)):
            sample_reader(sample, image, "mine")


def test_a_dataset_of_ones_own_batches_its_targets_as_the_loss_takes_them():
    """A 1-D regression target batched to (n,) broadcast against the model's (n, 1) outputs: the loss of
    every sample's output against every target, which trains to predicting the mean."""
    x = torch.randn(40, 3)
    regression = Splits(TensorDataset(x, x.sum(1).double()), DataInfo("regression", (3,), 1))
    batch = next(iter(build_loaders(DataConfig(name="mine", batch_size=8), regression, seed=0).train))
    assert batch[1].shape == (8, 1) and batch[1].dtype == torch.float32
    assert torch.allclose(batch[1][:, 0], batch[0].sum(1))
    column = Splits(TensorDataset(x, torch.randint(0, 2, (40, 1)).float()), DataInfo("classification", (3,), 2))
    batch = next(iter(build_loaders(DataConfig(name="mine", batch_size=8), column, seed=0).train))
    assert batch[1].shape == (8,) and batch[1].dtype == torch.long
    class Stream(torch.utils.data.IterableDataset):  # (webdataset's, Hugging Face's streaming datasets)
        def __iter__(self):
            return iter(zip(x, x.sum(1)))

    stream = Splits(Stream(), DataInfo("regression", (3,), 1))
    with pytest.raises(FtoolError, match=re.escape("data=mine: its train split (Stream) gives its samples "
                                                   "in one order only; ftool holds out, shuffles and resumes")):
        build_loaders(DataConfig(name="mine"), stream, seed=0)
    wrong = Splits(TensorDataset(x, torch.full((40,), 2)), DataInfo("classification", (3,), 2, ["a", "b"]))
    with pytest.raises(FtoolError, match=re.escape("data=mine: a sample's class is 2; the data has 2 classes")):
        build_loaders(DataConfig(name="mine"), wrong, seed=0)  # before training, not in a DataLoader worker


def test_synthetic_and_regression_shapes():
    data = loaders("synthetic", shape=[1, 28, 28], num_classes=4, train_size=64, test_size=16)
    assert data.info.input_shape == (1, 28, 28) and data.info.num_outputs == 4
    x, y = next(iter(data.test))
    assert x.shape[1:] == (1, 28, 28) and int(y.max()) < 4
    reg = loaders("regression", num_features=5, train_size=50, test_size=10)
    assert reg.info.task == "regression" and next(iter(reg.train))[1].shape[1:] == (1,)
    with pytest.raises(FtoolError, match=re.escape("data.shape: expected a list of positive sizes such as "
                                                   "[3,32,32], got [3, 0, 32]")):
        loaders("synthetic", shape=[3, 0, 32])


def test_digits_are_the_scikit_learn_images():
    from sklearn.datasets import load_digits

    data = loaders("digits", normalize=False)
    view = data.test.dataset
    x, y = view[0]
    i = view.indices[0]
    assert torch.allclose(x[0], torch.tensor(load_digits().images[i], dtype=torch.float32) / 16)
    assert y == int(load_digits().target[i])
    assert np.isclose(float(data.info.std[0]), 0.4, atol=0.1)


def test_a_table_predicts_its_last_column_from_the_others_or_the_columns_named(tmp_path):
    houses = tmp_path / "houses.csv"
    houses.write_text("area,rooms,price\n100,3,250.5\n50,1,120\n90,2,200\n60,2,130\n")
    data = DATASETS.build("table", {"path": str(houses)})
    info = data.info
    assert (info.task, info.input_shape, info.num_outputs) == ("regression", (2,), 1)
    assert info.columns == {"features": ["area", "rooms"], "target": ["price"], "task": "regression"}
    x, y = data.train.tensors
    assert x.tolist() == [[100, 3], [50, 1], [90, 2], [60, 2]] and y.flatten().tolist() == [250.5, 120, 200, 130]
    assert info.mean == pytest.approx((75.0, 2.0)) and info.std == pytest.approx((x[:, 0].std().item(), x[:, 1].std().item()))
    # what the model sees: each feature standardized by the table's mean and spread (areas and rooms alike)
    seen = torch.cat([xb for xb, _ in loaders("table", path=str(houses), val_fraction=0, test_fraction=0.25).everything])
    assert seen.mean(0).abs().max() < 1e-6 and seen.std(0).tolist() == pytest.approx([1.0, 1.0])
    # the targets' scale, which the model learns them in (the dataset keeps them in their units)
    assert info.target_mean == pytest.approx((175.125,)) and info.target_std == pytest.approx((y.std().item(),))

    two = DATASETS.build("table", {"path": str(houses), "target": ["price", "area"], "features": ["rooms"]})
    assert two.info.num_outputs == 2 and two.train.tensors[1][0].tolist() == [250.5, 100]
    (tmp_path / "years.csv").write_text("1990,2000\n1,2\n3,4.5\n")  # columns named by numbers, as Hydra reads them
    by_number = DATASETS.build("table", {"path": str(tmp_path / "years.csv"), "target": 2000, "features": [1990]})
    assert by_number.info.columns == {"features": ["1990"], "target": ["2000"], "task": "regression"}
    # one column by its name (data.features=rooms), as the target is; it was read letter by letter
    one = DATASETS.build("table", {"path": str(houses), "features": "rooms"})
    assert one.info.columns["features"] == ["rooms"] and one.train.tensors[0].flatten().tolist() == [3, 1, 2, 2]


def test_a_table_with_words_as_the_target_is_a_classifier_labelled_by_name(tmp_path, capsys):
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text('{"w": 1.5, "h": 2, "kind": "b"}\n{"w": 0.5, "h": 1, "kind": "a"}\n{"w": 9, "h": 0, "kind": "c"}\n')
    test.write_text('{"h": 1, "w": 0.5, "kind": "c"}\n')  # columns in another order, one class of three
    data = DATASETS.build("table", {"path": str(train), "test_path": str(test)})
    assert data.info.task == "classification" and data.info.class_names == ["a", "b", "c"]
    assert data.train.tensors[1].tolist() == [1, 0, 2] and data.test.tensors[0].tolist() == [[0.5, 1.0]]
    assert data.test.tensors[1].tolist() == [2]
    numbered = tmp_path / "numbered.csv"  # class numbers: a classifier when data.task says so
    numbered.write_text("x,label\n0.1,0\n0.9,2\n0.2,1\n")
    as_classes = DATASETS.build("table", {"path": str(numbered), "task": "classification"})
    assert as_classes.info.class_names == ["0", "1", "2"] and as_classes.train.tensors[1].dtype == torch.long
    assert DATASETS.build("table", {"path": str(numbered)}).info.task == "regression"  # three numbers: values
    numbered.write_text("x,survived\n0.1,0\n0.9,1\n0.2,0\n")  # two whole numbers: a yes-or-no question
    binary = DATASETS.build("table", {"path": str(numbered)})
    assert binary.info.class_names == ["0", "1"]
    survivors = tmp_path / "survivors.csv"  # new rows of one class, given to the run: still its classes
    survivors.write_text("x,survived\n0.8,1\n0.7,1\n")
    assert DATASETS.build("table", {"path": str(survivors)}, run_columns=binary.info.columns).info.task == "classification"
    assert "data: numbered.csv: survived (2 classes) from 1 column" in capsys.readouterr().out

    test.write_text('{"w": 1, "h": 1, "kind": "d"}\n')
    with pytest.raises(FtoolError, match="data.test_path: .*test.jsonl has classes the train data has not: d"):
        DATASETS.build("table", {"path": str(train), "test_path": str(test)})
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("w,h,kind\n1,2,a\n3,,b\n")
    with pytest.raises(FtoolError, match=r"data: .*gaps.csv row 2: 'h' is '', a missing value \(data.missing=fill"):
        DATASETS.build("table", {"path": str(gaps)})
    for args, message in [({"features": ["kind"]}, "data.features: 'kind' is the target too"),
                          ({"target": ["kind", "w"]}, "data.target: a classifier predicts one column, got 2"),
                          ({"target": "size"}, "row 1 has no column 'size'; its columns: w, h, kind")]:
        with pytest.raises(FtoolError, match=re.escape(message)):
            DATASETS.build("table", {"path": str(train), **args})


def test_a_tables_columns_of_words_are_one_hot_encoded_by_the_training_tables_values(tmp_path, capsys):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("city,zip,area,price\nParis,75001,30,300\nBerlin,10115,50,250\nParis,75002,40,380\n")
    test.write_text("city,zip,area,price\nRome,75001,60,200\nBerlin,10115,20,100\n")
    data = DATASETS.build("table", {"path": str(train), "test_path": str(test), "categorical": ["zip"]})
    info = data.info
    assert info.columns["categorical"] == {"city": ["Berlin", "Paris"], "zip": ["10115", "75001", "75002"]}
    assert info.input_shape == (6,)  # city: 2 inputs, zip: 3, area: 1
    assert data.train.tensors[0][0].tolist() == [0, 1, 0, 1, 0, 30]
    # Rome is none of the training table's cities: all 0, and a warning on stderr
    assert data.test.tensors[0].tolist() == [[0, 0, 0, 1, 0, 60], [1, 0, 1, 0, 0, 20]]
    warned = capsys.readouterr()
    assert "warning: data: " in warned.err and "'city' has values the training table has not (Rome)" in warned.err
    assert "warning" not in warned.out
    # the values given, in their order: a missing one is all 0
    fixed = DATASETS.build("table", {"path": str(train), "features": ["city"], "categorical": {"city": ["Rome", "Paris"]}})
    assert fixed.train.tensors[0].tolist() == [[0, 1], [0, 0], [0, 1]]

    assert DATASETS.build("table", {"path": str(train), "categorical": "zip"}).info.input_shape == (6,)  # one column
    with pytest.raises(FtoolError, match=r"data.categorical: 'town' is not among the features \(city, zip, area\)"):
        DATASETS.build("table", {"path": str(train), "categorical": ["town"]})
    with pytest.raises(FtoolError, match=r"data.categorical: give column names, as \[city, zip\]"):
        DATASETS.build("table", {"path": str(train), "categorical": [["city"]]})
    for values in ("Paris", ["Paris", "Paris"]):  # not a list of values: one value, or one twice
        with pytest.raises(FtoolError, match=r"data.categorical: city: .*: give a list of different values"):
            DATASETS.build("table", {"path": str(train), "categorical": {"city": values}})
    test.write_text("city,zip,area,price\nParis,75001,big,200\n")  # a word where the training table has numbers
    with pytest.raises(FtoolError, match=r"data: .*test.csv row 1: 'area' is 'big', not a number"):
        DATASETS.build("table", {"path": str(train), "test_path": str(test)})
    ids = tmp_path / "ids.csv"  # columns naming every row: an input per row, a row number
    ids.write_text("name,id,x,y\n" + "".join(f"p{i},{i + 1},{i * i % 7},{i % 2}\n" for i in range(30)))
    DATASETS.build("table", {"path": str(ids)})
    warned = capsys.readouterr().err
    assert "warning: data.categorical: 'name' has 30 values in 30 rows" in warned
    assert "warning: data.features: 'id' counts the rows (1 to 30, each once)" in warned and "'x'" not in warned


def test_a_tables_missing_values_are_an_error_or_dropped_or_filled(tmp_path, capsys):
    train = tmp_path / "train.csv"  # empty, NA (R), ? (UCI's files): missing, whatever the column holds
    train.write_text("city,age,fare,survived\nParis,20,10,1\n,NA,30,0\nRome,40,?,1\nParis,30,20,\n")
    with pytest.raises(FtoolError, match=r"train.csv row 2: 'city' is '', a missing value \(data.missing=fill fills it"):
        DATASETS.build("table", {"path": str(train), "target": "survived", "features": ["city", "age", "fare"]})
    ages = DATASETS.build("table", {"path": str(train), "features": ["age"], "missing": "drop"})  # NA is no word:
    assert ages.info.input_shape == (1,) and ages.train.tensors[0].tolist() == [[20], [40]]  # numbers, not classes

    dropped = DATASETS.build("table", {"path": str(train), "missing": "drop"})
    assert dropped.train.tensors[0].tolist() == [[1, 20, 10]]  # the one row with every value (Paris: its only city)
    assert "data: " in capsys.readouterr().out  # says how many rows it left out
    with pytest.raises(FtoolError, match=r"train.csv row 4: the target 'survived' is '', a missing value"):
        DATASETS.build("table", {"path": str(train), "missing": "fill"})  # a target is never made up

    train.write_text("city,age,fare,survived\nParis,20,10,1\n,NA,30,0\nRome,40,?,1\n")
    filled = DATASETS.build("table", {"path": str(train), "missing": "fill"})
    # city: none of Paris, Rome; age: the mean of 20 and 40; fare: of 10 and 30
    assert filled.train.tensors[0].tolist() == [[1, 0, 20, 10], [0, 0, 30, 30], [0, 1, 40, 20]]
    assert filled.info.columns["missing"] == {"city": None, "age": 30.0, "fare": 20.0}
    given = DATASETS.build("table", {"path": str(train), "missing": {"age": 0, "fare": 5}, "features": ["age", "fare"]})
    assert given.train.tensors[0].tolist() == [[20, 10], [0, 30], [40, 5]]
    with pytest.raises(FtoolError, match="data.missing: city: 0: a number for a feature column of numbers"):
        DATASETS.build("table", {"path": str(train), "missing": {"city": 0}})

    # a new table read as the run read its own: its fills and categories, not the new table's
    new = tmp_path / "new.csv"
    new.write_text("fare,age,city,survived\n100,,Rome,0\n")
    again = DATASETS.build("table", {"path": str(new)}, run_columns=filled.info.columns)
    assert again.train.tensors[0].tolist() == [[0, 1, 30, 100]] and again.info.columns == filled.info.columns


def test_a_table_saved_by_excel_with_decimal_commas_reads_its_numbers(tmp_path):
    # Excel where the decimal mark is a comma separates columns with ';': the header was one column,
    # the values went under the name None, and the run ended in a TypeError
    (tmp_path / "houses.csv").write_text("area;rooms;price\n100,5;3;250\n50;1;120,25\n90,0;2;200\n")
    data = DATASETS.build("table", {"path": str(tmp_path / "houses.csv")})
    assert data.info.columns["features"] == ["area", "rooms"] and "categorical" not in data.info.columns
    x, y = data.train.tensors
    assert x.tolist() == [[100.5, 3], [50, 1], [90, 2]] and y.flatten().tolist() == [250, 120.25, 200]
    # pandas' to_csv writes its index first, unnamed: row numbers, not a feature (it was one, with a warning)
    (tmp_path / "pandas.csv").write_text(",area,rooms,price\n0,100,3,250\n1,50,1,120\n2,90,2,200\n")
    assert DATASETS.build("table", {"path": str(tmp_path / "pandas.csv")}).info.columns["features"] == ["area", "rooms"]
    # ... and a separator ending each line makes an empty last column: not the target (every row "missing")
    (tmp_path / "trailing.csv").write_text("area,rooms,price,\n100,3,250,\n50,1,120,\n90,2,200,\n")
    columns = DATASETS.build("table", {"path": str(tmp_path / "trailing.csv")}).info.columns
    assert (columns["features"], columns["target"]) == (["area", "rooms"], ["price"])
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,3\n1,2,3,4\n")  # a row with a value too many
    with pytest.raises(FtoolError, match=r"data.path: .*ragged.csv line 3 has 4 values, and its header 3 names"):
        DATASETS.build("table", {"path": str(tmp_path / "ragged.csv")})
    (tmp_path / "twice.csv").write_text("a,a,y\n1,2,3\n")  # csv kept the second 'a' only
    with pytest.raises(FtoolError, match=r"data.path: .*twice.csv's header names 'a' twice; give each column its own"):
        DATASETS.build("table", {"path": str(tmp_path / "twice.csv")})
    # Excel's "Unicode Text" (UTF-16 with its byte-order mark, tab-separated, CRLF, named .txt) was "not
    # UTF-8 text", and a tab-separated table named .csv one column named "area\trooms\tcity\tprice"
    unicode_text = "area\trooms\tcity\tprice\n100,5\t3\tKöln\t250\n50\t1\tBonn\t120\n90\t2\tBonn\t199,5\n"
    (tmp_path / "unicode.txt").write_text(unicode_text.replace(",", "."), encoding="utf-16", newline="\r\n")
    (tmp_path / "tabs.csv").write_text(unicode_text.replace(",", "."), encoding="utf-8")
    for name in ("unicode.txt", "tabs.csv"):
        data = DATASETS.build("table", {"path": str(tmp_path / name)})
        assert data.info.columns["categorical"] == {"city": ["Bonn", "Köln"]}, name
        assert data.train.tensors[0].tolist() == [[100.5, 3, 0, 1], [50, 1, 1, 0], [90, 2, 1, 0]] and \
            data.train.tensors[1].flatten().tolist() == [250, 120, 199.5], name


def test_a_table_path_to_a_folder_or_a_workbook_says_what_it_needs(tmp_path):
    (tmp_path / "book.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00\xff\xfe")  # a zip, as Excel saves
    for path, message in [(tmp_path, "is a folder; give a table file (CSV, TSV, JSON, Parquet)"),
                          (tmp_path / "book.xlsx", "book.xlsx is an Excel workbook; ftool reads text, CSV, TSV, JSON "
                                                   "and Parquet files: save it as CSV")]:
        with pytest.raises(FtoolError, match=re.escape(message)):
            DATASETS.build("table", {"path": str(path)})


def test_the_labels_of_a_split_are_those_of_its_samples():
    """data.classes, then held out: labels_of reads them without loading a sample (class weights count them)."""
    from ftool import components
    from ftool.config import RunConfig
    from ftool.data.classes import labels_of

    for classes in (None, [7, 3, 5]):
        run = RunConfig(model=None, data=DataConfig(name="digits", classes=classes), optimizer=None, scheduler=None,
                        trainer=TrainerConfig())
        data = components.build_data(run)
        for split in (data.train, data.val, data.test):
            assert labels_of(split.dataset) == [int(y) for _, y in split.dataset]


def test_cross_validation_folds_hold_out_each_sample_once():
    folds = [loaders("digits", folds=5, fold=f) for f in range(5)]
    tests = [set(d.test.dataset.indices) for d in folds]
    assert sorted(len(t) for t in tests) == [359, 359, 359, 360, 360]  # 1,797 in five: sizes differ by one at most
    assert set().union(*tests) == set(range(1797)) and sum(map(len, tests)) == 1797  # each sample tested once
    for data, test in zip(folds, tests):
        train, val = set(data.train.dataset.indices), set(data.val.dataset.indices)
        assert not (train & test) and not (val & test) and not (train & val) and len(train | val | test) == 1797
    assert [set(d.test.dataset.indices) for d in (loaders("digits", folds=5, fold=2),)] == [tests[2]]  # fixed
    assert set(loaders("digits", folds=5, fold=2, split_seed=1).test.dataset.indices) != tests[2]
    with pytest.raises(FtoolError, match="data.folds: data=synthetic has a test split of its own; cross-validation"):
        loaders("synthetic", folds=3, shape=[1, 4, 4], num_classes=2, train_size=30, test_size=10)
    with pytest.raises(FtoolError, match="data.test_size: 100 is not for data.folds, whose fold is the test split"):
        loaders("digits", folds=5, test_size=100)
    with pytest.raises(FtoolError, match="data.folds: 2000 folds of 1797 samples would leave some empty"):
        loaders("digits", folds=2000)


def test_fold_settings_out_of_range_are_errors():
    assert DataConfig(folds=1).problems() == ["data.folds: must be 0 (none) or >= 2, got 1"]
    assert DataConfig(folds=5, fold=5).problems() == ["data.fold: must be in [0, 4] (of data.folds=5), got 5"]
    assert DataConfig(fold=2).problems() == ["data.fold: needs data.folds (>= 2): the folds to choose from, got 2"]
