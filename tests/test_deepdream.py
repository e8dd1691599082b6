"""DeepDream, its feature networks and the photos it starts from: tiny random nets, small images, real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import genrun_in_process
from genrun.data import photos
from genrun.errors import GenrunError
from genrun.families.base import SampleRequest
from genrun.families.deepdream import DeepDreamPipeline, DreamKnobs, ascend, objective, octave_shapes
from genrun.nets.classifier import ConvClassifier
from genrun.nets.feature_nets import ClassifierFeatures, InceptionFeatures, VGGFeatures


def tiny_net() -> ClassifierFeatures:
    torch.manual_seed(0)
    return ClassifierFeatures(ConvClassifier(channels=1, image_size=28, num_classes=10, width=4)).eval()


def test_inception_layers_are_torchvisions_mixed_concatenations():
    net = InceptionFeatures()  # random weights: no package ships ImageNet's
    assert net.layer_names == ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                               "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
    with torch.no_grad():
        out = net(torch.rand(1, 3, 107, 107), ["Mixed_5b", "Mixed_6e", "Mixed_7c"])
    assert {k: v.shape[1] for k, v in out.items()} == {"Mixed_5b": 256, "Mixed_6e": 768, "Mixed_7c": 2048}
    assert out["Mixed_5b"].shape[-1] > out["Mixed_6e"].shape[-1] > out["Mixed_7c"].shape[-1]
    # torchvision's own module, with the auxiliary head its weights file has, so that file loads strictly
    from torchvision.models.inception import Inception3

    assert type(net.net) is Inception3 and net.net.AuxLogits is not None
    assert "AuxLogits.fc.weight" in net.net.state_dict() and "fc.weight" in net.net.state_dict()


def test_gradient_ascent_raises_the_objective():
    net = tiny_net()
    layers = {"conv2": 1.0, "conv3": 0.5}
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    before = float(objective(net, x, layers))
    knobs = DreamKnobs(iterations=8, step_size=0.02, jitter=2, smooth=0.5)
    dreamt, values = ascend(net, x, layers, knobs, torch.Generator().manual_seed(0))
    after = float(objective(net, dreamt, layers))
    assert after > 1.5 * before
    assert values[0] == pytest.approx(before, rel=0.3)  # the first value is the start's (jittered)
    assert dreamt.min() >= 0 and dreamt.max() <= 1


def test_octaves_run_smallest_first_and_reinject_detail():
    assert octave_shapes(100, 200, 3, 2.0, 1) == [(25, 50), (50, 100), (100, 200)]
    assert octave_shapes(100, 200, 4, 2.0, 40) == [(50, 100), (100, 200)]  # too small for the net: dropped
    pipeline = DeepDreamPipeline({"features": tiny_net()})
    photo = torch.rand(3, 30, 45, generator=torch.Generator().manual_seed(2))
    dreamt, strip, record = pipeline.dream(photo, DreamKnobs(octaves=3, octave_scale=1.5, iterations=2),
                                           torch.Generator().manual_seed(0))
    assert dreamt.shape == photo.shape
    assert [tuple(t.shape[-2:]) for t in strip] == [(13, 20), (20, 30), (30, 45)]
    assert [o["objective"][-1] > o["objective"][0] for o in record["octaves"]] == [True] * 3


def test_unknown_layer_is_refused_listing_the_valid_ones():
    pipeline = DeepDreamPipeline({"features": tiny_net()})
    knobs = DreamKnobs(layers={"Mixed_5b": 1.0})
    with pytest.raises(GenrunError, match=r"no layer 'Mixed_5b'; its layers: conv1, conv2, conv3"):
        pipeline.dream(torch.rand(3, 28, 28), knobs, torch.Generator())
    with pytest.raises(GenrunError, match="octave_scale=1.0"):
        SampleRequest.of(DreamKnobs, octave_scale=1.0)


def test_sample_dreams_with_no_checkpoint_and_names_its_offline_network(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    image = tmp_path / "odd.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (83, 97, 3), dtype=np.uint8)).save(image)
    code, out, err = genrun_in_process(["sample", "model=deepdream", "model.weights=none",
                                        "model.fallback=random_inception", f"image={image}", "octaves=2",
                                        "octave_scale=1.1", "iterations=1", "jitter=2"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "NOTICE: DeepDream without ImageNet InceptionV3 weights (model.weights=none)" in err
    run = next((tmp_path / "outputs" / "sample").glob("deepdream_*/*"))
    assert run.name.startswith("dream_")  # the run directory says what was drawn, as a trained model's do
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["checkpoint"] is None
    assert "offline fallback" in metrics["results"]["feature_network"]
    assert any("random-weight InceptionV3" in note for note in metrics["notes"])
    assert Image.open(run / "dream.png").size == (97, 83)  # the input's resolution
    assert Image.open(run / "octaves.png").width > 2 * 97  # start + two octaves


def test_weights_for_another_architecture_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    wrong = tmp_path / "vgg.pth"
    torch.save(VGGFeatures(width=0.125).state_dict(), wrong)
    code, _out, err = genrun_in_process(["sample", "model=deepdream", f"model.weights={wrong}"], tmp_path,
                                        monkeypatch, capsys)
    assert code != 0
    assert f"model.weights={wrong}: not InceptionV3 weights" in err
    assert "Traceback" not in err


# --- photos -----------------------------------------------------------------------------------------------------

def test_bundled_photos_load_at_their_own_resolution():
    image, name = photos.load_photo(None)
    assert name == "grace_hopper.jpg (bundled)" and image.shape == (3, 600, 512)
    china, _ = photos.load_photo("china", size=64)
    assert china.shape == (3, 43, 64) and china.min() >= 0 and china.max() <= 1


def test_bad_photos_are_refused_naming_the_file(tmp_path, monkeypatch):
    from PIL import Image

    with pytest.raises(GenrunError, match=r"^image=.*missing\.jpg: no such file$"):
        photos.load_photo(str(tmp_path / "missing.jpg"))
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    with pytest.raises(GenrunError, match=r"^image=.*junk\.jpg: cannot read it as an image"):
        photos.load_photo(str(junk))
    big = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(GenrunError, match=r"^image=.*big\.png: its header claims 4,096 pixels, over PIL's limit"):
        photos.load_photo(str(big))


def test_cmyk_and_16_bit_images_are_decoded_not_refused(tmp_path):
    from PIL import Image

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("RGB", (20, 10), (200, 40, 10)).convert("CMYK").save(cmyk, quality=100)
    image, _ = photos.load_photo(str(cmyk))
    assert image.shape == (3, 10, 20)
    assert torch.allclose(image.mean((1, 2)), torch.tensor([200, 40, 10]) / 255, atol=0.03)
    deep = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 12), 32768, dtype=np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    grey, _ = photos.load_photo(str(deep))
    assert grey.shape == (3, 8, 12) and torch.allclose(grey, torch.full_like(grey, 32768 / 65535))


def test_too_large_an_image_is_refused_up_front_naming_the_limit():
    with pytest.raises(GenrunError, match=r"over the model.max_pixels limit of 1,000"):
        photos.check_pixels(40, 40, 1000, "image=x.png", "model.max_pixels")


def test_photos_are_shipped_by_installed_packages():
    for name in photos.BUNDLED:
        assert Path(photos.bundled_path(name)).is_file()


@pytest.mark.slow
def test_offline_deepdream_dreams_with_genruns_own_trained_classifier(tmp_path):
    from conftest import check_ok, run_genrun

    (tmp_path / "data").mkdir()
    args = ["sample", "model=deepdream", "model.weights=none", "size=48", "octaves=2", "iterations=2"]
    first = check_ok(run_genrun(args, tmp_path, env={"GENRUN_CLASSIFIER_EPOCHS": "1"}))
    assert "dreaming with genrun's own MNIST classifier" in first.stderr
    assert "training the domain classifier" in first.stderr
    second = check_ok(run_genrun(args, tmp_path, env={"GENRUN_CLASSIFIER_EPOCHS": "1"}))
    assert "training the domain classifier" not in second.stderr  # cached, as genrun evaluate caches it
    runs = sorted((tmp_path / "outputs" / "sample").glob("deepdream_*/*"))
    metrics = json.loads((runs[-1] / "metrics.json").read_text())
    source = metrics["results"]["feature_network"]
    assert source.startswith("genrun's MNIST classifier (cached") and "offline fallback" in source
    assert metrics["results"]["objective_end"] > metrics["results"]["objective_start"]


def test_a_checkpoint_is_refused_for_a_model_with_no_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(["sample", "model=deepdream", "ckpt=last"], tmp_path, monkeypatch, capsys)
    assert code != 0 and "ckpt=last: model=deepdream has no training and reads no checkpoint" in err


@pytest.mark.slow
def test_train_says_in_one_line_that_deepdream_has_no_training(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(["train", "model=deepdream", "dataset.source=mini"], tmp_path, monkeypatch,
                                        capsys)
    assert code != 0 and "model=deepdream has no training" in err and "Traceback" not in err
