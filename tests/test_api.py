"""The public API: small, lazy, and stable under submodule imports."""

import importlib
import subprocess
import sys

import dreamsound


def test_exports_are_functions_even_after_submodule_imports():
    # The submodules share their function's name; loading them must not shadow the function.
    importlib.import_module("dreamsound.classify")
    importlib.import_module("dreamsound.dream")

    for name in ("classify", "dream", "sonify", "evaluate", "load_model"):
        assert callable(getattr(dreamsound, name)), name


def test_import_is_light():
    code = "import sys, dreamsound; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
