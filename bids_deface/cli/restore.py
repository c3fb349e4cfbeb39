"""``bids-deface restore OUTPUT_DIR VAULT_DIR RESTORED_DIR --identity PRIVATE_KEY.pem``.

Rebuilds under RESTORED_DIR the original of every file the vault covers, each written whole or
not at all, and names each file it could not restore with the reason. Exit 0 when every entry
was restored, 1 otherwise (2: usage error). The passphrase comes from
``$BIDS_DEFACE_KEY_PASSPHRASE`` or the terminal and is never logged.
"""

from __future__ import annotations

from bids_deface.cli.logs import LOGGER
from bids_deface.vault import VaultError, load_identity, restore_tree
from bids_deface.vault.restore import FAILED


def run(opts, argv=None) -> int:
    try:
        identity = load_identity(opts.identity)
        rows = restore_tree(opts.output_dir, opts.vault_dir, opts.restored_dir, identity)
    except VaultError as exc:
        LOGGER.error("%s", exc)
        return 1
    failed = [row for row in rows if row.status == FAILED]
    for row in rows:
        if row.status == FAILED:
            LOGGER.error("%s: not restored: %s", row.relpath, row.reason)
        else:
            LOGGER.debug("%s: restored", row.relpath)
    LOGGER.info("restored %d of %d vault entries into %s", len(rows) - len(failed), len(rows), opts.restored_dir)
    return 1 if failed else 0
