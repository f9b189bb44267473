"""Model recipes: a deterministic description of how a (poisoned) model was made, and the
builder that trains it, exports it to ONNX through the product's export path, and writes a
sidecar JSON (attack, parameters, seed, measured CDA and ASR).

Why recipes: tests, the demo, the benchmarks and ``scan attack`` all need models "trained the
same way"; a recipe hash keys the cache so a model is trained once and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scanner import __version__
from scanner.errors import InputError

CIFAR_SPEC_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_SPEC_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelRecipe:
    """Everything that determines a trained model (``name`` is a label, not part of the key)."""

    name: str
    arch: str = "resnet20"
    attack: str | None = None  # None: a clean model
    attack_params: dict = field(default_factory=dict)
    m: int = 0
    target: int = 0
    train_size: int = 20_000
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 128
    seed: int = 0
    normalize_in_graph: bool = False  # bake CIFAR mean/std into the exported graph
    dataset: str = "cifar10"
    weight_decay: float = 5e-4
    augment: bool = True  # random crop + flip while training

    def key(self) -> str:
        d = asdict(self)
        d.pop("name")
        # Fields added after models were cached join the key only when they differ from their
        # defaults, so every model trained before they existed keeps its key and its cache.
        for f, default in (("weight_decay", 5e-4), ("augment", True)):
            if d[f] == default:
                d.pop(f)
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __hash__(self) -> int:  # dict field: hash by key
        return hash(self.key())


class _Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def load_training_data(train_size: int, test_size: int = 2000
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-10 train subset (the shards are pre-shuffled) and a class-stratified test subset."""
    from scanner.attacks.train import load_subset

    return load_subset(train_size, test_size)


def build_model_from_recipe(recipe: ModelRecipe, out_dir: Path, *, device: str = "cpu",
                            data: tuple | None = None, out_path: Path | None = None,
                            class_names: list[str] | None = None,
                            log: Callable[[str], None] | None = None) -> Path:
    """Train, export to ``out_dir/<name>.onnx`` (+ ``.json`` sidecar) and return the ONNX path.

    ``data`` is ``(x_train, y_train, x_test, y_test)`` in [0,1] NCHW; default: CIFAR-10 from
    ``../shared``. The number of classes is read from the labels.
    """
    from scanner.attacks import get_attack, train_model
    from scanner.attacks.train import attack_success_rate, evaluate
    from scanner.io.cifar import CIFAR10_CLASSES
    from scanner.io.export import export_onnx
    from scanner.io.spec import InputSpec
    from scanner.models import build_model

    log = log or (lambda s: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = data if data is not None else load_training_data(recipe.train_size)
    x_tr, y_tr = x_tr[:recipe.train_size], y_tr[:recipe.train_size]
    attack = None
    if recipe.attack:
        attack = get_attack(recipe.attack, m=recipe.m, target=recipe.target, seed=recipe.seed,
                            **recipe.attack_params)
    num_classes = int(max(int(y_tr.max()), int(y_te.max()))) + 1
    if class_names is None and recipe.dataset == "cifar10":
        class_names = list(CIFAR10_CLASSES)
    torch.manual_seed(recipe.seed)
    net = build_model(recipe.arch, num_classes=num_classes, in_channels=int(x_tr.shape[1]))
    if recipe.normalize_in_graph:
        net = nn.Sequential(_Normalize(CIFAR_SPEC_MEAN, CIFAR_SPEC_STD), net)
    t0 = time.perf_counter()

    def progress(epoch: int, epochs: int, rec: dict) -> None:
        log(f"[{recipe.name}] epoch {epoch}/{epochs} loss {rec['loss']:.3f} "
            f"train_acc {rec['train_acc']:.3f}")

    model, _ = train_model(net, x_tr, y_tr, attack=attack, epochs=recipe.epochs,
                           batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed,
                           weight_decay=recipe.weight_decay, augment=recipe.augment,
                           device=device, num_classes=num_classes, progress=progress)
    train_s = time.perf_counter() - t0
    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    cda = evaluate(model, x_te, y_te)
    asr = attack_success_rate(model, attack, x_te, y_te) if attack is not None else None
    sidecar = {"recipe": asdict(recipe), "recipe_key": recipe.key(), "cda": cda, "asr": asr,
               "test_images": int(len(y_te)), "train_seconds": round(train_s, 1),
               "tool_version": __version__,
               "target": recipe.target if attack is not None and attack.all_to_one else None,
               "all_to_all": attack is not None and not attack.all_to_one}
    spec = InputSpec(channels=int(x_tr.shape[1]), height=int(x_tr.shape[2]),
                     width=int(x_tr.shape[3]), input_name="input", output_name="logits")
    onnx_path = Path(out_path) if out_path is not None else out_dir / f"{recipe.name}.onnx"
    export_onnx(model, None, onnx_path, spec=spec, actions=f"trained from recipe {recipe.key()}",
                extra_metadata={**({"classes": json.dumps(class_names)} if class_names else {}),
                                "scanner.recipe": json.dumps(asdict(recipe), default=str)})
    tmp = onnx_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, default=str))
    os.replace(tmp, onnx_path.with_suffix(".json"))
    log(f"[{recipe.name}] CDA {cda:.3f} ASR {asr if asr is None else round(asr, 3)} "
        f"({train_s:.0f}s) -> {onnx_path}")
    return onnx_path


def cached_model(recipe: ModelRecipe, cache_dir: Path, **kw) -> Path:
    """Build once per recipe key; later calls return the cached file (resumable zoos)."""
    d = Path(cache_dir) / recipe.key()
    p = d / f"{recipe.name}.onnx"
    if p.is_file() and p.with_suffix(".json").is_file():
        return p
    return build_model_from_recipe(recipe, d, **kw)


def read_sidecar(onnx_path: Path) -> dict:
    p = Path(onnx_path).with_suffix(".json")
    if not p.is_file():
        raise InputError(f"no sidecar JSON next to {onnx_path}")
    return json.loads(p.read_text())




def load_attack_data(source: str | Path, *, train_size: int, test_size: int = 2000,
                     num_classes: int = 10, input_size: tuple[int, int] = (32, 32),
                     test_frac: float = 0.2, seed: int = 0
                     ) -> tuple[tuple, list[str] | None, str]:
    """Training and test data for ``scan attack``: ``"cifar10"`` or a user's labelled data.

    A user's folder / CSV / npz is read with the trusted-data loader (same formats, same errors)
    and split stratified into train and test. Returns ``(data, class_names, dataset_label)``.
    """
    if str(source) == "cifar10":
        return load_training_data(train_size, test_size), None, "cifar10"
    from scanner.io.data import load_trusted
    from scanner.io.spec import InputSpec

    spec = InputSpec(channels=3, height=input_size[0], width=input_size[1])
    data = load_trusted(source, spec, num_classes, min_per_class=2)
    train, test = data.split(test_frac, seed=seed)
    n = min(train_size, len(train))
    return (train.x[:n], train.y[:n], test.x, test.y), data.class_names, f"custom:{source}"


def parse_attack_params(items: list[str]) -> dict:
    """``["alpha=0.3", "k=8", "mode=noise"]`` -> typed dict (int, float, bool or string)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"--param expects NAME=VALUE, got {item!r}")
        k, v = (t.strip() for t in item.split("=", 1))
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"true": True, "false": False}.get(v.lower(), v)
    return out
