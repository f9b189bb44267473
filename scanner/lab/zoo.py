"""The games' model zoo: recipes for every (attack, m, seed), trained once and cached.

Why through the recipe cache and the product's importer: a game should measure defenses and
detectors on the same kind of model ``scan`` receives (exported to ONNX and imported back, BN
folded), and a model trained for one game (or by ``python -m fixtures.recipes``) is reused by
every other run with the same recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from scanner.errors import InputError
from scanner.lab.data import GameData

Log = Callable[[str], None]


def quiet(_msg: str) -> None:
    """A log that says nothing (the default of every game)."""
    return None


@dataclass(frozen=True)
class ZooSpec:
    """How every model of a zoo is trained (everything of a recipe but attack, m and seed)."""

    arch: str = "resnet8"
    train_size: int = 20_000
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 128
    target: int = 0
    normalize_in_graph: bool = False
    dataset: str = "cifar10"

    @property
    def setting(self) -> str:
        return f"{self.arch}/n{self.train_size}/e{self.epochs}"


def make_recipe(spec: ZooSpec, attack: str | None, m: int, seed: int, params: dict | None = None):
    """The :class:`scanner.attacks.recipe.ModelRecipe` of one zoo model."""
    from scanner.attacks.recipe import ModelRecipe

    name = f"{spec.arch}_{attack or 'clean'}" + (f"_m{m}" if attack else "") + f"_s{seed}"
    return ModelRecipe(name=name, arch=spec.arch, attack=attack, attack_params=dict(params or {}),
                       m=m if attack else 0, target=spec.target, train_size=spec.train_size,
                       epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size, seed=seed,
                       normalize_in_graph=spec.normalize_in_graph, dataset=spec.dataset)


def recipe_attack(recipe):
    """The recipe's attack with its exact trigger (seeded triggers depend on the recipe seed)."""
    if not recipe.attack:
        return None
    from scanner.attacks import get_attack

    return get_attack(recipe.attack, m=recipe.m, target=recipe.target, seed=recipe.seed,
                      **recipe.attack_params)


def recipe_identity(recipe, spec: ZooSpec) -> dict:
    """The row fields that say which model a game row measured."""
    return {"recipe_key": recipe.key(), "recipe_name": recipe.name,
            "attack": recipe.attack or "clean", "m": recipe.m, "seed": recipe.seed,
            "arch": recipe.arch, "train_size": recipe.train_size, "epochs": recipe.epochs,
            "target": recipe.target, "setting": spec.setting}


@dataclass
class Built:
    """A trained model as the games see it: a SplitClassifier on [0,1] images, and its attack."""

    model: torch.nn.Module
    attack: object | None
    info: dict = field(default_factory=dict)


Builder = Callable[[object], Built]


class RecipeBuilder:
    """Train (or load from the recipe-hash cache) a model and import it as a user's ONNX file."""

    def __init__(self, cache_dir: str | Path, data: GameData, *, device: str = "cpu",
                 log: Log = quiet) -> None:
        self.cache_dir, self.data, self.device, self.log = Path(cache_dir), data, device, log
        self.calls = 0

    def __call__(self, recipe) -> Built:
        from scanner.attacks.recipe import cached_model
        from scanner.classifier import SplitClassifier
        from scanner.io.loader import load_model

        self.calls += 1
        d = self.data
        if recipe.train_size > len(d.y_train):
            raise InputError(f"recipe {recipe.name} trains on {recipe.train_size} images but only "
                             f"{len(d.y_train)} were loaded")
        path = self.find_cached(recipe) or cached_model(
            recipe, self.cache_dir, device=self.device,
            data=(d.x_train, d.y_train, d.x_test, d.y_test), log=self.log)
        model = SplitClassifier.from_loaded(load_model(path)).eval()
        return Built(model, recipe_attack(recipe), {"path": str(path)})

    def find_cached(self, recipe) -> Path | None:
        """Any model in the recipe's cache folder whose sidecar has the same recipe key.

        ``cached_model`` looks for ``<key>/<name>.onnx``; the name is a label outside the key,
        so a zoo built under other names (``python -m fixtures.recipes zoo``) is reused here.
        """
        d = self.cache_dir / recipe.key()
        for p in sorted(d.glob("*.onnx")) if d.is_dir() else []:
            try:
                if json.loads(p.with_suffix(".json").read_text()).get("recipe_key") == recipe.key():
                    return p
            except (OSError, ValueError):
                continue
        return None
