"""Generative families. Torch-free at this level: the family table (:mod:`components.models.family`) and the
hyperparameter schemas (:mod:`components.models.configs`); each family's networks and objective live in
``components/models/<family>.py`` and are imported only when a model is built."""

from components.models.family import FAMILIES, build_model, get_family, parse_family_config

__all__ = ["FAMILIES", "build_model", "get_family", "parse_family_config"]
