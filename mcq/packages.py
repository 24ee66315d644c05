"""Models shipped inside Python packages (`package:<module>`), used by training, inference and retrieval."""

from __future__ import annotations

import importlib
from pathlib import Path

from mcq.errors import ConfigError


def resolve_model_path(name: str) -> str:
    """`package:<module>` -> the model folder that Python package ships; anything else unchanged."""
    if not name.startswith("package:"):
        return name
    module_name = name.split(":", 1)[1]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"model '{name}': Python package '{module_name}' is not installed; "
            f"pip install {module_name.replace('_', '-')}"
        ) from err
    path = Path(module.get_model_path() if hasattr(module, "get_model_path") else module.MODEL_DIR)
    if not (path / "config.json").is_file():
        raise ConfigError(f"model '{name}': {path} holds no config.json; reinstall the package")
    return str(path)
