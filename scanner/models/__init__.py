"""Architecture registry: build a model by name (timm-style: query, then one builder)."""

from scanner.models.registry import ArchConfig, build_model, get_config, list_archs

__all__ = ["ArchConfig", "build_model", "get_config", "list_archs"]
