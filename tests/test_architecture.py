"""The house rules of ARCHITECTURE.md, checked on the installed package's source.

Small modules with one job, short functions, a core that imports no nipype, an installed package
that holds the app only (no training or test tooling), and every third-party import declared.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bids_deface"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# packages below the workflows: pure Python on arrays and images, testable without nipype
CORE = ("features", "distort.py", "images.py", "metadata", "vault", "dicom", "qc", "dataset", "defacing", "check")
# import name -> distribution name, where they differ
DISTRIBUTIONS = {"bids": "pybids", "cv2": "opencv-python", "PIL": "pillow", "yaml": "pyyaml", "dlib": "dlib-bin",
                 "sklearn": "scikit-learn", "Crypto": "pycryptodome", "jinja2": "Jinja2", "dateutil": "python-dateutil",
                 "face_recognition_models": "face-recognition-models", "bids_validator": "bids-validator-deno",
                 "pylibjpeg": "pylibjpeg", "gdcm": "python-gdcm", "presidio_analyzer": "presidio-analyzer",
                 "spellchecker": "pyspellchecker", "stdnum": "python-stdnum", "jpeg_ls": "pyjpegls",
                 "openjpeg": "pylibjpeg-openjpeg", "libjpeg": "pylibjpeg-libjpeg", "rle": "pylibjpeg-rle"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(tree(path)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_module_is_small_and_its_functions_short(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines (at most {MAX_MODULE_LINES})"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree(path))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_core_imports_no_nipype():
    offenders = [p.relative_to(PACKAGE).as_posix() for p in modules()
                 if p.relative_to(PACKAGE).parts[0] in CORE
                 and any(n == "nipype" or n.startswith("nipype.") for n in imported_names(p))]
    assert not offenders, f"core modules importing nipype: {offenders}"


def test_installed_package_holds_the_app_only():
    tooling = [p.relative_to(PACKAGE).as_posix() for p in modules()
               if any(n.split(".")[0] in ("training", "tools", "benchmarks", "pytest") for n in imported_names(p))]
    assert not tooling, f"installed modules importing development tooling: {tooling}"
    outside = [p.relative_to(PACKAGE).as_posix() for p in modules() if "../shared" in p.read_text()]
    assert not outside, f"installed modules pointing outside the repository: {outside}"


def test_every_third_party_import_is_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {d.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].split("!")[0].split("~")[0]
                .strip().lower().replace("_", "-") for d in project["dependencies"]}
    stdlib = set(sys.stdlib_module_names)
    missing = set()
    for path in modules():
        for name in imported_names(path):
            top = name.split(".")[0]
            if top in stdlib or top == "bids_deface":
                continue
            dist = DISTRIBUTIONS.get(top, top).lower().replace("_", "-")
            if dist not in declared:
                missing.add(f"{top} ({path.relative_to(PACKAGE).as_posix()})")
    assert not missing, f"imports not declared in pyproject.toml: {sorted(missing)}"
