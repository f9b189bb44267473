"""The wild zoo's definition: the split written down before measuring, and what it spans."""

from __future__ import annotations

from collections import Counter

from scanner.attacks import list_attacks
from scanner.lab.wild_zoo import (ALL_TO_ONE, DEV_FAMILIES, FAMILIES, LR_SCALE,
                                  TEST_ONLY_FAMILIES, TRIGGERS, cache_dir, select, wild_zoo)
from scanner.models.registry import list_archs


def test_split_is_by_seed_and_family():
    zoo = wild_zoo()
    dev, test = select(zoo, "dev"), select(zoo, "test")
    assert len(dev) + len(test) == len(zoo) and dev and test
    assert {z.family for z in dev} == set(DEV_FAMILIES)
    assert all(z.recipe.name.endswith("_s0") for z in dev)
    # every family is in the test part; three of them only there
    assert {z.family for z in test} == set(FAMILIES)
    assert not set(TEST_ONLY_FAMILIES) & set(DEV_FAMILIES)
    assert len({z.recipe.key() for z in zoo}) == len(zoo)  # no two entries share a cache slot


def test_zoo_spans_families_recipes_and_trigger_kinds():
    zoo = wild_zoo()
    assert len(FAMILIES) >= 5 and all(arch in list_archs() for arch, _ in FAMILIES.values())
    assert {name for name, _, _ in TRIGGERS.values()} <= set(list_attacks())
    kinds = Counter(z.trigger for z in zoo)
    assert all(kinds[k] >= 2 for k in ALL_TO_ONE) and kinds["all_to_all"] >= 1
    assert kinds[None] == 2 * len(FAMILIES)  # a clean model per family and seed
    recipes = {(round(z.recipe.lr / LR_SCALE.get(z.family, 1.0), 6), z.recipe.batch_size,
                z.recipe.weight_decay, z.recipe.augment) for z in zoo}
    assert len(recipes) == 2
    assert all(z.recipe.normalize_in_graph for z in zoo)
    for z in zoo:
        rate = z.recipe.m / z.recipe.train_size
        assert (z.trigger is None) == (z.recipe.attack is None)
        assert z.trigger is None or 0.01 <= rate <= 0.1


def test_cache_lives_outside_the_work_tree(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "backdoor-scanner" / "zoo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert str(cache_dir()).startswith(str(__import__("pathlib").Path.home()))
