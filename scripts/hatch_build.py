"""Wheel build hook: refuse to build a wheel without the shipped int8 model (it would need torch to serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ShippedModelCheck(BuildHookInterface):  # type: ignore[type-arg]
    """Stops a wheel build early when src/engram/embeddings/minilm/ has not been generated."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Check that the generated model directory is complete before files are collected."""
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install reads the directory from the source tree once it is generated
        bundle = Path(self.root) / "src" / "engram" / "embeddings" / "minilm"
        if not (bundle / "manifest.json").is_file() or not (bundle / "model.int8.onnx").is_file():
            raise RuntimeError(
                f"{bundle} is missing: generate the shipped model first with `make model` "
                "(python -m engram.embeddings.bundle_build, in the dev venv) before building a wheel."
            )
