"""Validation of the input dataset with bids-validator-deno."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

def validator_executable() -> str:
    """``bids-validator-deno`` from this environment (the venv's bin), else from PATH."""
    beside = Path(sys.executable).parent / "bids-validator-deno"
    if beside.exists():
        return str(beside)
    found = shutil.which("bids-validator-deno")
    if not found:
        raise FileNotFoundError("bids-validator-deno not found (pip install bids-validator-deno)")
    return found


def validate_dataset(path: Path, *, ignore_nifti_headers: bool = False) -> list[str]:
    """Run bids-validator-deno on ``path``; one line per error (code, location), [] if valid."""
    cmd = [validator_executable(), str(path), "--format", "json", "--no-color"]
    if ignore_nifti_headers:
        cmd.append("--ignoreNiftiHeaders")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return [f"bids-validator-deno failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"]
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    lines = []
    for issue in errors:
        sub = f" {issue['subCode']}" if issue.get("subCode") else ""
        lines.append(f"{issue.get('code')}{sub}: {issue.get('location', '')}")
    if not lines and proc.returncode not in (0,):
        lines.append(f"bids-validator-deno exited with {proc.returncode}")
    return lines


