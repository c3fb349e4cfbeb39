"""``bids-deface BIDS_DIR OUTPUT_DIR group``: the summary of every image, as TSV and HTML."""

from __future__ import annotations

from bids_deface.cli.logs import LOGGER
from bids_deface.cli.parser import UsageError
from bids_deface.dataset.atomic import write_text_atomic
from bids_deface.dataset.select import (SelectionError, list_face_images, load_bids_filters, load_layout,
                                        select_face_images, selection_datatypes)
from bids_deface.reports.group import (SUMMARY_HTML, SUMMARY_TSV, read_records, summary_html, summary_rows,
                                       summary_tsv, write_qc_reports)
from bids_deface.reports.sessions import session_views
from bids_deface.reports.templating import verdict_counts, write_html


def run(opts, argv=None) -> int:
    """``bids-deface bids_dir output_dir group``: write the summary; 0 when written."""
    output_dir = opts.output_dir
    if not (output_dir / "logs" / "images").is_dir():
        raise UsageError(f"{output_dir} holds no participant-level results (no logs/images/); "
                         "run the participant level first")
    images = None
    try:
        images = _input_images(opts)
    except SelectionError as exc:
        LOGGER.warning("input dataset not listed (%s): summarising the records only", exc)
    records = read_records(output_dir)
    rows = summary_rows(records, images)
    write_text_atomic(output_dir / SUMMARY_TSV, summary_tsv(rows))
    title = f"bids-deface summary: {output_dir.name}"
    write_html(output_dir / SUMMARY_HTML, summary_html(rows, title, output_dir, session_views(output_dir, records)))
    if opts.qc_dir is not None:
        reports = write_qc_reports(opts.qc_dir, output_dir)
        LOGGER.info("QC reports (they show the original face: do not share them): %s", reports[-1])
    tally = ", ".join(f"{n} {status}" for status, n in verdict_counts([row["status"] for row in rows]))
    LOGGER.info("%d image(s) summarised (%s): %s, %s", len(rows), tally, output_dir / SUMMARY_TSV,
                output_dir / SUMMARY_HTML)
    return 0


def _input_images(opts) -> list:
    """The images the participant level was to deface: listed from the anat folders, or, with a
    BIDS filter file, from a pybids index of the selection (no sidecars: the summary needs none)."""
    if opts.bids_filter_file is None:
        return list_face_images(opts.bids_dir, participant_label=opts.participant_label,
                                session_label=opts.session_label, suffixes=opts.suffix)
    filters = load_bids_filters(opts.bids_filter_file)
    layout = load_layout(opts.bids_dir, participant_label=opts.participant_label, datatypes=selection_datatypes(filters),
                         index_metadata=False, database_dir=getattr(opts, "bids_database_dir", None))
    return select_face_images(layout, participant_label=opts.participant_label, session_label=opts.session_label,
                              suffixes=opts.suffix, bids_filters=filters, metadata=False)
