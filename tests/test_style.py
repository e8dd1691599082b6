"""Style transfer (Gatys) and the fast feed-forward stylizer (Johnson): tiny random VGGs, small images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import check_ok, genrun_in_process, run_genrun
from genrun.errors import GenrunError
from genrun.families.base import SampleRequest
from genrun.families.style import (
    PerceptualLoss,
    StyleKnobs,
    StyleTransferPipeline,
    gram,
    luminance_only,
    optimise,
    recolour,
)
from genrun.nets.feature_nets import VGGFeatures


def tiny_vgg() -> VGGFeatures:
    return VGGFeatures(width=0.125).random_init(0).requires_grad_(False).eval()


def test_gram_matrix_matches_a_hand_computation():
    features = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4) / 10
    c, n = 2, 12
    flat = features[0].reshape(c, n).tolist()
    hand = [[sum(flat[i][k] * flat[j][k] for k in range(n)) / (c * n) for j in range(c)] for i in range(c)]
    assert torch.allclose(gram(features)[0], torch.tensor(hand))


def test_vgg19_layer_names_and_shapes_match_torchvision():
    from torchvision.models.vgg import cfgs, make_layers

    net = VGGFeatures(pooling="max")
    reference = make_layers(cfgs["E"]).state_dict()  # torchvision's vgg19().features
    assert {f"features.{k}": v.shape for k, v in reference.items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert net.layer_names[:3] == ("conv1_1", "conv1_2", "conv2_1") and net.layer_names[-1] == "conv5_4"
    with torch.no_grad():
        out = net(torch.rand(1, 3, 32, 32), ["conv1_1", "conv4_2", "conv5_1"])
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {"conv1_1": (64, 32, 32), "conv4_2": (512, 4, 4),
                                                              "conv5_1": (512, 2, 2)}
    assert min(float(v.min()) for v in out.values()) >= 0  # after the ReLU, as Gatys et al.'s layers are


def test_style_loss_falls_under_both_optimisers():
    net = tiny_vgg()
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g) ** 3
    for optimizer in ("lbfgs", "adam"):
        loss_fn = PerceptualLoss(net, content_weight=1.0, style_weight=10.0, tv_weight=0.0)
        loss_fn.set_style([style], [1.0])
        knobs = StyleKnobs(steps=15, optimizer=optimizer, lr=0.05)
        result, curve = optimise(loss_fn, content, loss_fn.content_target(content), knobs)
        assert len(curve) >= 15 if optimizer == "adam" else 1 <= len(curve) <= 15 + 25
        assert curve[-1]["style"] < 0.5 * curve[0]["style"], optimizer
        assert curve[-1]["loss"] < curve[0]["loss"]
        assert result.shape == content.shape and result.min() >= 0 and result.max() <= 1


def test_blended_styles_target_the_weighted_gram():
    net = tiny_vgg()
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    loss_fn = PerceptualLoss(net, {"conv1_1": 1.0})
    loss_fn.set_style([a, b], [3.0, 1.0])
    ga, gb = (gram(net(x, ["conv1_1"])["conv1_1"]) for x in (a, b))
    assert torch.allclose(loss_fn.targets["conv1_1"], 0.75 * ga + 0.25 * gb, atol=1e-6)


def test_colour_preservation_keeps_the_contents_colours():
    content = torch.tensor([0.8, 0.3, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    grey = luminance_only(torch.rand(1, 3, 4, 4))
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])
    back = recolour(luminance_only(content), content)
    assert torch.allclose(back, content, atol=1e-5)


def test_style_knobs_refuse_bad_values_in_one_line():
    with pytest.raises(GenrunError, match=r"style_weights=\[1\]: 1 weights for 2 style image"):
        SampleRequest.of(StyleKnobs, style=["a.jpg", "b.jpg"], style_weights=[1])
    with pytest.raises(GenrunError, match="optimizer=sgd"):
        SampleRequest.of(StyleKnobs, optimizer="sgd")
    with pytest.raises(GenrunError, match="no layer 'relu9'; its layers: conv1_1, conv1_2"):
        PerceptualLoss(tiny_vgg(), {"relu9": 1.0})


def test_sample_stylizes_with_no_checkpoint_and_names_its_offline_network(tmp_path, monkeypatch, capsys):
    from PIL import Image

    (tmp_path / "data").mkdir()
    style = tmp_path / "stripes.png"
    stripes = np.zeros((40, 40, 3), dtype=np.uint8)
    stripes[::4] = (250, 30, 30)
    Image.fromarray(stripes).save(style)
    code, out, err = genrun_in_process(["sample", "model=style_transfer", "model.weights=none", "model.width=0.125",
                                        "content=china", f"style=[{style},flower]", "style_weights=[2,1]",
                                        "size=33", "steps=4", "preserve_color=true"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "NOTICE: style transfer without ImageNet VGG19 weights" in err
    run = next((tmp_path / "outputs" / "sample").glob("style_transfer_*/*"))
    metrics = json.loads((run / "metrics.json").read_text())
    results = metrics["results"]
    assert metrics["checkpoint"] is None and "offline fallback" in results["feature_network"]
    assert results["styles"] == ["stripes.png", "flower.jpg (bundled)"] and results["blend"] == [2.0, 1.0]
    assert len(results["curve"]["loss"]) == results["evaluations"] >= 1
    assert Image.open(run / "stylized.png").size == (33, 22)  # china.jpg is 640x427: long side 33
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_style_file_that_is_missing_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(["sample", "model=style_transfer", "model.weights=none", "model.width=0.125",
                                        "style=nowhere.jpg", "size=16", "steps=1"], tmp_path, monkeypatch, capsys)
    assert code != 0 and "style=nowhere.jpg: no such file" in err and "Traceback" not in err


def test_pipeline_from_config_refuses_another_architectures_weights(tmp_path):
    from torchvision.models.inception import Inception3

    wrong = tmp_path / "inception.pth"
    torch.save(Inception3(aux_logits=False, init_weights=False).Conv2d_1a_3x3.state_dict(), wrong)
    with pytest.raises(GenrunError, match=rf"model.weights={wrong}: not VGG19 weights \(32 of its 32 tensors missing"):
        StyleTransferPipeline.from_config({"weights": str(wrong)})


# --- fast style (Johnson et al. 2016) -----------------------------------------------------------------------------

def test_the_fast_stylizer_keeps_every_image_size_odd_ones_too():
    from genrun.nets.transformer_net import TransformerNet

    net = TransformerNet(width=4, residual_blocks=1).eval()
    with torch.no_grad():
        for h, w in ((37, 51), (32, 32), (3, 5), (64, 17)):
            assert net(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)
    assert net.init_config == {"width": 4, "residual_blocks": 1, "channels": 3}
    with pytest.raises(GenrunError, match="dataset.channels=1: fast style stylises RGB images"):
        TransformerNet(channels=1)


def test_photo_crops_are_random_crops_of_the_bundled_photos():
    from genrun.data.photo_crops import PhotoCropsDataModule

    data = PhotoCropsDataModule(count=10, image_size=16, val_fraction=0.2, test_fraction=0.2)
    info = data.info()
    assert info["source"] == "photo_crops" and info["split_sizes"] == {"train": 6, "val": 2, "test": 2}
    x = data.splits["train"][0]
    assert x.shape == (6, 3, 16, 16) and x.std() > 0.05


@pytest.mark.slow
def test_fast_style_trains_offline_and_stylizes_an_odd_sized_image(tmp_path):
    from PIL import Image

    (tmp_path / "data").mkdir()
    result = run_genrun(["train", "model=fast_style", "dataset=photo_crops", "dataset.count=20",
                         "dataset.image_size=16", "model.weights=none", "model.feature_width=0.125", "model.width=4",
                         "model.residual_blocks=1", "model.style_size=32", "trainer.max_epochs=1", "num_samples=0"],
                        tmp_path)
    check_ok(result)
    assert "random 16x16 crops of the bundled photos" in result.stderr + result.stdout
    image = tmp_path / "odd.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (31, 45, 3), dtype=np.uint8)).save(image)
    sampled = check_ok(run_genrun(["sample", "model=fast_style", f"image={image}"], tmp_path))
    run = next((tmp_path / "outputs" / "sample").glob("fast_style_*/*"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert Image.open(run / "stylized.png").size == (45, 31)
    assert metrics["results"]["milliseconds"] > 0 and "ms (one forward pass" in sampled.stdout
    assert "offline fallback" in metrics["results"]["feature_network"]
    assert metrics["results"]["style"] == "flower.jpg (bundled)"
