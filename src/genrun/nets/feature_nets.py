"""Frozen feature networks for image optimisation: InceptionV3 (DeepDream) and VGG19 (style transfer).

The real path is torchvision's architectures with its ImageNet weights, found the way torchvision finds them
(the torch hub cache, else a download when online) or given as `model.weights=FILE`, always read with
`torch.load(weights_only=True)`; a file for another architecture is refused in one line. Offline without
weights, `build_feature_net` says so in one prominent line and falls back, naming the fallback in `source`
(which every output records): for style a VGG19-shaped net with seeded random filters (texture synthesis
works with random filters: Ustyuzhaninov et al. 2016; He et al. 2016), for DeepDream genrun's own MNIST
classifier (trained and cached as `genrun evaluate` does). Each net maps images in [0, 1] to a dict of
named activations (`forward(x, layers)`), stopping at the deepest layer asked for.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from genrun.errors import GenrunError

# model.weights values that are not files: find ImageNet weights the torchvision way, or skip to the fallback.
AUTO, NONE = "auto", "none"
DOWNLOAD_TIMEOUT_S = 20.0
# The content layer with random filters: their deep layers keep little of a photo's layout, a shallower one
# keeps it (He et al. 2016 also take shallower layers for random nets).
RANDOM_CONTENT_LAYER = "conv2_2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's VGG19 ("E") layer plan: channels per conv, "M" for a 2x pooling.
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M")


class FeatureNet(nn.Module):
    """Named activations of a frozen network; `source` says which network and weights these are."""

    source: str = ""
    layer_names: tuple[str, ...] = ()
    min_size: int = 1  # the smallest image side the net takes
    channels: int = 3

    def check_layers(self, layers: Iterable[str], key: str) -> None:
        """Refuse a layer the network lacks, listing the ones it has."""
        for name in layers:
            if name not in self.layer_names:
                raise GenrunError(f"{key}: {self.short_name} has no layer {name!r}; its layers: "
                                  f"{', '.join(self.layer_names)}")

    @property
    def short_name(self) -> str:
        return type(self).__name__


class VGGFeatures(FeatureNet):
    """VGG19's convolutional part with Gatys et al.'s layer names (conv1_1 ... conv5_4: each the activation
    after its ReLU, as Caffe's in-place ReLU gives), average pooling by default (Gatys et al.'s choice).
    `width` scales every layer's channels (1: the real VGG19; less: a small random net for tests)."""

    def __init__(self, width: float = 1.0, pooling: str = "avg"):
        super().__init__()
        if pooling not in ("avg", "max"):
            raise GenrunError(f"model.pooling={pooling}: choose avg or max")
        layers, names, c_in, block, index = [], [], 3, 1, 1
        for item in VGG19_PLAN:
            if item == "M":
                layers.append(nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2))
                names.append(f"pool{block}")
                block, index = block + 1, 1
                continue
            c_out = max(1, round(int(item) * width))
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            names += [f"conv{block}_{index}_linear", f"conv{block}_{index}"]
            c_in, index = c_out, index + 1
        self.features = nn.Sequential(*layers)  # indices as torchvision's vgg19().features: its keys load as they are
        self.names = names
        self.layer_names = tuple(n for n in names if n.startswith("conv") and not n.endswith("_linear"))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.min_size = 1
        self.source = "VGG19"
        self.content_layer = "conv4_2"  # Gatys et al.'s, for ImageNet weights

    @property
    def short_name(self) -> str:
        return "VGG19"

    def random_init(self, seed: int = 0) -> VGGFeatures:
        """Seeded He-normal filters, zero biases (torchvision's own VGG initialisation), and the content layer
        that suits random filters."""
        self.content_layer = RANDOM_CONTENT_LAYER
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.features:
                if isinstance(module, nn.Conv2d):
                    fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                    module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_out) ** 0.5)
                    module.bias.zero_()
        return self

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out, h = {}, (x - self.mean) / self.std
        for name, module in zip(self.names, self.features, strict=True):
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


class InceptionFeatures(FeatureNet):
    """torchvision's InceptionV3 up to Mixed_7c; DeepDream's layers are its "Mixed" concatenations. Inputs are
    scaled to [-1, 1], the normalisation the ImageNet weights (Google's) were trained with."""

    SEQUENCE = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")

    def __init__(self, init_weights: bool = False):
        super().__init__()
        from torchvision.models.inception import Inception3

        # aux_logits so that torchvision's weights file loads strictly; the head is never run.
        self.net = Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=init_weights)
        self.layer_names = tuple(n for n in self.SEQUENCE if n.startswith("Mixed"))
        self.min_size = 75  # torchvision's InceptionV3 refuses smaller inputs: its stem shrinks them to nothing
        self.source = "InceptionV3"

    @property
    def short_name(self) -> str:
        return "InceptionV3"

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        out, h = {}, x * 2 - 1
        for name in self.SEQUENCE:
            h = getattr(self.net, name)(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


class ClassifierFeatures(FeatureNet):
    """genrun's own image classifier (genrun.nets.classifier.ConvClassifier) as a feature network: its conv
    stages, named conv1 ... convN (after each ReLU). A grey classifier sees a colour image's luminance."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier
        self.channels = int(classifier.channels)
        stages = [i for i, m in enumerate(classifier.body) if isinstance(m, nn.ReLU)]
        self.stage_ends = {f"conv{k + 1}": i for k, i in enumerate(stages)}
        self.layer_names = tuple(self.stage_ends)
        self.min_size = 2 ** (len(stages) - 1)
        self.source = "genrun's MNIST classifier"

    @property
    def short_name(self) -> str:
        return "the offline classifier"

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = {self.stage_ends[name]: name for name in layers}
        if self.channels == 1 and x.shape[1] == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        out, h = {}, x * 2 - 1  # as ConvClassifier.features scales its inputs
        for i, module in enumerate(self.classifier.body):
            h = module(h)
            if i in wanted:
                out[wanted[i]] = h
                if len(out) == len(wanted):
                    break
        return out


# --- ImageNet weights, the torchvision way ----------------------------------------------------------------------

def _weights_enum(arch: str):
    from torchvision.models import Inception_V3_Weights, VGG19_Weights

    return {"inception_v3": Inception_V3_Weights.IMAGENET1K_V1, "vgg19": VGG19_Weights.IMAGENET1K_V1}[arch]


def hub_cache_file(arch: str) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of `arch`: the torch hub cache."""
    url = _weights_enum(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _download(arch: str, target: Path) -> str | None:
    """Fetch torchvision's weights file into the hub cache (hash checked as torchvision checks it); the reason
    on failure (offline, say) instead of an exception."""
    url = _weights_enum(arch).url
    match = re.search(r"-([a-f0-9]+)\.", target.name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), hash_prefix=match[1] if match else None, progress=False)
        return None
    except Exception as err:  # no network, a proxy, a refused connection, a bad hash: all mean "fall back"
        return f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
    finally:
        socket.setdefaulttimeout(previous)


def read_state_dict(path: Path, key: str) -> dict:
    """A weights file as a state_dict, read with weights_only=True; one line naming the file otherwise."""
    if not path.is_file():
        raise GenrunError(f"{key}={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refusals, truncated files, not a torch file at all
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise GenrunError(f"{key}={path}: cannot be read as a weights file ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GenrunError(f"{key}={path}: not a state_dict of tensors")
    return state


def load_weights(module: nn.Module, state: dict, arch_name: str, path: Path, key: str) -> None:
    """Load `state` strictly into `module`; another architecture's file is refused in one line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        found = next(iter(state), "nothing")
        raise GenrunError(f"{key}={path}: not {arch_name} weights ({len(missing)} of its {len(own)} tensors "
                          f"missing, e.g. {missing[0]}; the file has e.g. {found})")
    wrong = [k for k in own if state[k].shape != own[k].shape]
    if wrong:
        raise GenrunError(f"{key}={path}: not {arch_name} weights ({wrong[0]} has shape "
                          f"{tuple(state[wrong[0]].shape)}, {arch_name} needs {tuple(own[wrong[0]].shape)})")
    module.load_state_dict({k: state[k] for k in own})


def imagenet_weights(arch: str, weights: str, key: str = "model.weights") -> tuple[dict | None, str, Path | None]:
    """(state_dict or None, where it came from or why there is none, its file) for `arch` ('inception_v3',
    'vgg19'): `weights` is a file, `auto` (the torch hub cache, else a download) or `none`."""
    if str(weights) == NONE:
        return None, f"{key}=none", None
    if str(weights) != AUTO:
        path = Path(str(weights)).expanduser()
        return read_state_dict(path, key), f"ImageNet weights from {path}", path
    cached = hub_cache_file(arch)
    if cached.is_file():
        return read_state_dict(cached, key), f"ImageNet weights from the torch hub cache ({cached})", cached
    failure = _download(arch, cached)
    if failure is None:
        return read_state_dict(cached, key), f"ImageNet weights downloaded to {cached}", cached
    return None, f"none in the torch hub cache ({cached}) and the download failed: {failure}", None


def notice(message: str) -> None:
    """A prominent one-line notice on stderr (the fallback must never be silent)."""
    from genrun.progress import stage

    stage(f"NOTICE: {message}")


# --- the nets image optimisation asks for -------------------------------------------------------------------

def vgg19_features(weights: str = AUTO, pooling: str = "avg", width: float = 1.0, seed: int = 0,
                   width_key: str = "model.width") -> VGGFeatures:
    """VGG19 with ImageNet weights, else (saying so) a VGG19-shaped net with seeded random filters."""
    net = VGGFeatures(width=width, pooling=pooling)
    if width != 1.0:
        state, where, path = None, f"{width_key}={width:g}: ImageNet weights need width 1", None
    else:
        state, where, path = imagenet_weights("vgg19", weights)
    if state is not None:
        load_weights(net, state, "VGG19", path, "model.weights")  # torchvision's features.N keys, as they are
        net.source = f"VGG19, {where}"
    else:
        net.random_init(seed)
        net.source = f"random VGG19-shaped net (seed {seed}, width {width:g}), offline fallback"
        notice(f"style transfer without ImageNet VGG19 weights ({where}): using a VGG19-shaped net with random "
               "filters (random-filter texture synthesis, Ustyuzhaninov et al. 2016); pass model.weights=FILE "
               "(vgg19-dcbb9e9d.pth) for the real thing")
    return net.requires_grad_(False).eval()


def inception_features(weights: str = AUTO) -> InceptionFeatures:
    """InceptionV3 with ImageNet weights, or a GenrunError if there are none (the caller falls back)."""
    state, where, path = imagenet_weights("inception_v3", weights)
    if state is None:
        raise _NoWeights(where)
    net = InceptionFeatures()
    load_weights(net.net, state, "InceptionV3", path, "model.weights")
    net.source = f"InceptionV3, {where}"
    return net.requires_grad_(False).eval()


class _NoWeights(Exception):
    """No ImageNet weights: the reason, for the fallback's notice."""


def dream_features(weights: str = AUTO, fallback: str = "classifier", data_dir: str | None = None,
                   cache_dir: str | None = None, classifier_epochs: int | None = None,
                   device: torch.device | str = "cpu") -> FeatureNet:
    """DeepDream's network: InceptionV3 with ImageNet weights, else genrun's MNIST classifier
    (`fallback=classifier`, trained once and cached as `genrun evaluate` does) or a randomly initialised
    InceptionV3 (`fallback=random_inception`), said so in one line."""
    try:
        return inception_features(weights)
    except _NoWeights as reason:
        why = str(reason)
    if fallback == "random_inception":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = InceptionFeatures(init_weights=True)
        net.source = "random-weight InceptionV3 (seed 0), offline fallback"
        notice(f"DeepDream without ImageNet InceptionV3 weights ({why}): dreaming with a randomly initialised "
               "InceptionV3; pass model.weights=FILE (inception_v3_google-0cc3c7bd.pth) for the real thing")
        return net.requires_grad_(False).eval()
    if fallback != "classifier":
        raise GenrunError(f"model.fallback={fallback}: choose classifier or random_inception")
    notice(f"DeepDream without ImageNet InceptionV3 weights ({why}): dreaming with genrun's own MNIST classifier "
           "instead (trained once and cached); pass model.weights=FILE (inception_v3_google-0cc3c7bd.pth) for "
           "the real thing")
    classifier, origin = mnist_classifier(data_dir, cache_dir, classifier_epochs, device)
    net = ClassifierFeatures(classifier)
    net.source = f"genrun's MNIST classifier ({origin}), offline fallback for InceptionV3"
    return net.requires_grad_(False).eval()


def mnist_classifier(data_dir: str | None, cache_dir: str | None, epochs: int | None,
                     device: torch.device | str = "cpu") -> tuple[nn.Module, str]:
    """genrun's domain classifier for MNIST, from the cache `genrun evaluate` keeps, trained on first use."""
    from types import SimpleNamespace

    from genrun.data.mnist import MNISTDataModule
    from genrun.evaluation.domain_classifier import domain_classifier

    data = MNISTDataModule(data_dir=str(data_dir or "data"))
    data.purpose = "training DeepDream's offline classifier on"
    info = data.info()
    context = SimpleNamespace(settings={"classifier_epochs": epochs, "classifier_dir": cache_dir},
                              data_info=info, device=torch.device(device),
                              load_split=lambda split: data.splits[split])
    found = domain_classifier(context)
    return found.net, f"{found.origin} {found.path}"
