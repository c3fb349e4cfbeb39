"""Entry point of ``bids-deface``: parse, then hand over to the subcommand's own module."""

from __future__ import annotations

import importlib
import sys

from bids_deface.cli.parser import UsageError, parse_args, usage_line

# subcommand -> module under bids_deface.cli with a ``run(opts) -> int``
MODULES = {"participant": "participant", "group": "group", "dicom": "dicom", "keygen": "keygen",
           "restore": "restore",
           "check": "check"}


def main(argv: list[str] | None = None) -> int:
    """Run ``bids-deface``; returns the exit status (0 success, 1 failures, 2 usage errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_args(argv)
        from bids_deface.cli.logs import setup_console_logging

        setup_console_logging(opts.verbose)
        module = importlib.import_module(f"bids_deface.cli.{MODULES[opts.command]}")
        return module.run(opts, argv)
    except UsageError as exc:
        print(usage_line(str(exc)), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bids-deface: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
