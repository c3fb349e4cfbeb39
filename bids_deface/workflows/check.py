"""The privacy check's workflow: one node per image, so that any nipype plugin (MultiProc,
SLURM, SGE …) spreads the images as the participant level does.

Each node runs :func:`bids_deface.check.image.check_image` and writes its result as JSON into the
run's private results folder (renders into its figures folder); the caller reads them back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits
from nipype.pipeline import engine as pe

from bids_deface.workflows.execution import unique_node_name


class _CheckImageInputSpec(BaseInterfaceInputSpec):
    in_file = traits.Str(mandatory=True, desc="the image file")
    relpath = traits.Str(mandatory=True, desc="its path in the dataset (how results name it)")
    figures_dir = traits.Str(mandatory=True, desc="private folder for the renders behind findings")
    result_json = traits.Str(mandatory=True, desc="where the result goes")
    total = traits.Int(1, usedefault=True, desc="images in the run (for progress lines)")


class _CheckImageOutputSpec(TraitedSpec):
    result_json = traits.Str(desc="the result written")


class CheckImage(SimpleInterface):
    """Check one image; never raises for a bad image (the result says it was unreadable)."""

    input_spec = _CheckImageInputSpec
    output_spec = _CheckImageOutputSpec

    def _run_interface(self, runtime):
        from bids_deface.check.image import check_image

        inputs = self.inputs
        result = check_image(inputs.in_file, inputs.relpath, inputs.figures_dir)
        out = Path(inputs.result_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        tmp.write_text(json.dumps(result.to_json()), encoding="utf-8")
        tmp.replace(out)
        progress(out.parent, inputs.total, result)
        self._results["result_json"] = str(out)
        return runtime


def progress(results_dir: Path, total: int, result) -> None:
    """``check: [3/40] sub-01/anat/sub-01_T1w.nii.gz flagged (4.1 s)`` on stderr; one line that
    rewrites itself on a terminal, plain lines otherwise (logs, clusters)."""
    done = sum(1 for _ in Path(results_dir).glob("*.json"))
    word = "flagged" if result.flagged else "passed"
    line = f"bids-deface: check [{done}/{total}] {result.path} {word} ({result.facts.get('seconds', 0):.1f} s)"
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + line + ("\n" if done >= total else ""))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def node_name(relpath: str, taken: set[str]) -> str:
    return unique_node_name("check", relpath, taken)


def init_check_wf(*, images, results_dir, figures_dir, name="bids_deface_check_wf"):
    """One :class:`CheckImage` node per image.

    Parameters
    ----------
    images : list of (absolute path, path in the dataset).
    results_dir : folder for one ``<n>.json`` result per image (read back by the caller).
    figures_dir : folder for the renders behind findings.

    Returns
    -------
    (workflow, {path in the dataset: result file})
    """
    wf = pe.Workflow(name=name)
    taken: set[str] = set()
    results = {}
    for i, (path, relpath) in enumerate(images):
        node = pe.Node(CheckImage(), name=node_name(relpath, taken))
        node.inputs.in_file = str(path)
        node.inputs.relpath = relpath
        node.inputs.figures_dir = str(Path(figures_dir) / f"{i:05d}")
        node.inputs.result_json = str(Path(results_dir) / f"{i:05d}.json")
        node.inputs.total = len(images)
        wf.add_nodes([node])
        results[relpath] = Path(node.inputs.result_json)
    return wf, results
