"""The one command-line parser of ``bids-deface``: every subcommand, every option, its help.

The BIDS-Apps form ``bids-deface BIDS_DIR OUTPUT_DIR participant|group [options]`` (as fMRIPrep and
MRIQC) is read as the subcommand ``participant``/``group``; the other doors are subcommands of their
own (``bids-deface dicom IN OUT``). A usage error is one line naming the problem, never the usage
block: ``bids-deface: error: <problem> (see bids-deface --help)``, exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from bids_deface.cli.checks import check_bids_app_paths, check_restore_paths, check_vault_options
from bids_deface.cli.errors import UsageError  # noqa: F401  (re-exported: the subcommands raise it)
from bids_deface.cli.options import PROG, SUBCOMMANDS
from bids_deface.dataset.provenance import package_version

BIDS_APP_LEVELS = ("participant", "group")

EXAMPLES = """\
subcommands, with an example each:
  participant   deface every face-bearing image into a BIDS derivative (or a raw copy)
                  bids-deface /data/bids /data/bids-defaced participant
                  bids-deface /data/bids /data/bids-shareable participant --output-layout raw
                  bids-deface /data/bids /data/out participant --participant-label 01 sub-02 \\
                      --suffix T1w --features eyes nose --nprocs 4
                  bids-deface /data/bids /data/out participant --plugin SLURM \\
                      --plugin-args '{"sbatch_args": "--time=00:30:00 --mem=4G"}'
  group         a summary of every image (TSV and HTML), after the participant level
                  bids-deface /data/bids /data/out group
  check         privacy preflight of any dataset before sharing: faces, ears, identifying metadata
                  bids-deface check /data/bids-shareable --report-dir /secure/check-report
                  bids-deface check /data/bids --report-dir /secure/report --participant-label 01 --nprocs 4
  dicom         de-identify (PS3.15 Annex E) and deface a folder of DICOM files
                  bids-deface dicom /data/dicom-in /data/dicom-out --key-file site.key
  keygen        a key pair for the vault (private key encrypted under a passphrase)
                  bids-deface keygen /secure/keys/owner --type rsa
  restore       rebuild the original files from the output and its vault (key holder only)
                  bids-deface /data/bids /data/out participant --vault-dir /secure/vault \\
                      --vault-recipient owner.pub.pem --vault-recipient auditor.pub.pem
                  bids-deface restore /data/out /secure/vault /secure/restored \\
                      --identity /secure/keys/owner.key.pem

'bids-deface SUBCOMMAND --help' lists a subcommand's options.
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem (no usage block)."""

    def error(self, message):  # noqa: D401 - argparse's hook
        raise UsageError(message)


def usage_line(message: str) -> str:
    return f"{PROG}: error: {message} (see {PROG} --help)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        usage=f"{PROG} BIDS_DIR OUTPUT_DIR {{participant,group}} [options]\n"
              f"       {PROG} {{{','.join(s for s in SUBCOMMANDS if s not in BIDS_APP_LEVELS)}}} ...",
        description="Deface head MRI before sharing: find the eyes, nose and ears with a 3D U-Net and "
                    "distort only those (after Jeong et al., JMIR 2020); remove identifying metadata.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=OneLineParser)
    for add in SUBCOMMANDS.values():
        add(sub)
    return parser


def bids_app_argv(argv: list[str]) -> list[str]:
    """``BIDS_DIR OUTPUT_DIR participant …`` → ``participant BIDS_DIR OUTPUT_DIR …``."""
    if argv and argv[0] in SUBCOMMANDS:
        return argv
    positionals = [i for i, a in enumerate(argv) if not a.startswith("-")][:3]
    if len(positionals) == 3 and argv[positionals[2]] in BIDS_APP_LEVELS and positionals[:2] == [0, 1]:
        level = argv[positionals[2]]
        return [level, *argv[:positionals[2]], *argv[positionals[2] + 1:]]
    return argv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; a usage error raises :class:`UsageError` (one line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        raise UsageError("no subcommand: give BIDS_DIR OUTPUT_DIR participant|group, or one of "
                         + ", ".join(s for s in SUBCOMMANDS if s not in BIDS_APP_LEVELS))
    normalised = bids_app_argv(argv)
    if normalised[0] not in SUBCOMMANDS and not normalised[0].startswith("-"):
        raise UsageError(f"unknown subcommand {normalised[0]!r}: expected BIDS_DIR OUTPUT_DIR participant|group, "
                         "or one of " + ", ".join(s for s in SUBCOMMANDS if s not in BIDS_APP_LEVELS))
    opts = parser.parse_args(normalised)
    if opts.command is None:
        raise UsageError("no subcommand given")
    if opts.command in BIDS_APP_LEVELS:
        check_bids_app_paths(opts)
    if opts.command in ("participant", "dicom"):
        check_vault_options(opts)
    if getattr(opts, "qc_override", None) and opts.qc_dir is None:
        raise UsageError("--qc-override needs --qc-dir (it releases what quality control finds)")
    if opts.command == "restore":
        check_restore_paths(opts)
    return opts


