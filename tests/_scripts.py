"""Loading the scripts under benchmarks/ and examples/ as modules, as the tests call their main()."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
EXAMPLES = ROOT / "examples"


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """The script at ``path`` as a module; its own folder is importable while it loads, as when run."""
    spec = importlib.util.spec_from_file_location(name or f"{path.parent.name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
