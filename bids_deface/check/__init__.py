"""``bids-deface check``: a privacy preflight for any dataset, whoever defaced it.

The core, without nipype, one job a module:

- :mod:`.views`: 9 yaws × 3 pitches of head-surface renders (QC's renderer);
- :mod:`.face`: QC's three offline face detectors on every view;
- :mod:`.ears`: the auricle's outline in the profile depth maps;
- :mod:`.image`: one NIfTI file: header text fields and extensions, then faces and ears when the
  image can show a face (:func:`bids_deface.dataset.faces.can_show_face`);
- :mod:`.metadata`: sidecars, tables and text files through the metadata allow-list and the
  free-text PHI detection of :mod:`bids_deface.metadata`;
- :mod:`.dataset`: which files of a dataset are read;
- :mod:`.findings`: what was found (never a value) and the TSV/JSON tables;
- :mod:`.report`: the self-contained HTML report.

The workflow (one node per image) is :mod:`bids_deface.workflows.check`; the command,
:mod:`bids_deface.cli.check`.
"""

from bids_deface.check.findings import CHECKS, FileResult, Finding
from bids_deface.check.image import check_image
from bids_deface.check.metadata import check_metadata_file

__all__ = ["CHECKS", "FileResult", "Finding", "check_image", "check_metadata_file"]
