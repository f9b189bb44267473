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

    def key(self) -> str:
        d = asdict(self)
        d.pop("name")
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
    from scanner.attacks.bench import load_subset

    return load_subset(train_size, test_size)


def build_model_from_recipe(recipe: ModelRecipe, out_dir: Path, *, device: str = "cpu",
                            data: tuple | None = None,
                            log: Callable[[str], None] | None = None) -> Path:
    """Train, export to ``out_dir/<name>.onnx`` (+ ``.json`` sidecar) and return the ONNX path."""
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
    torch.manual_seed(recipe.seed)
    net = build_model(recipe.arch, num_classes=10)
    if recipe.normalize_in_graph:
        net = nn.Sequential(_Normalize(CIFAR_SPEC_MEAN, CIFAR_SPEC_STD), net)
    t0 = time.perf_counter()

    def progress(epoch: int, epochs: int, rec: dict) -> None:
        log(f"[{recipe.name}] epoch {epoch}/{epochs} loss {rec['loss']:.3f} "
            f"train_acc {rec['train_acc']:.3f}")

    model, _ = train_model(net, x_tr, y_tr, attack=attack, epochs=recipe.epochs,
                           batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed,
                           device=device, num_classes=10, progress=progress)
    train_s = time.perf_counter() - t0
    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    cda = evaluate(model, x_te, y_te)
    asr = attack_success_rate(model, attack, x_te, y_te) if attack is not None else None
    sidecar = {"recipe": asdict(recipe), "recipe_key": recipe.key(), "cda": cda, "asr": asr,
               "test_images": int(len(y_te)), "train_seconds": round(train_s, 1),
               "tool_version": __version__, "target": recipe.target if attack else None}
    spec = InputSpec(channels=3, height=32, width=32, input_name="input", output_name="logits")
    onnx_path = out_dir / f"{recipe.name}.onnx"
    export_onnx(model, None, onnx_path, spec=spec, actions=f"trained from recipe {recipe.key()}",
                extra_metadata={"classes": json.dumps(list(CIFAR10_CLASSES)),
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


