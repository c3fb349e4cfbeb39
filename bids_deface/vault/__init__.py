"""The vault: what defacing and scrubbing removed, encrypted for the data owner's public keys,
so that ``bids-deface restore`` with a private key rebuilds the original files exactly.

Pure Python on ``cryptography`` (no nipype). The participant level and the DICOM door write
entries with :class:`VaultWriter` (public keys only); ``restore`` opens them with
:func:`restore_tree`. The format is described in :mod:`bids_deface.vault.envelope` (the sealed
entry) and :mod:`bids_deface.vault.content` (what an entry holds), and in the README.
"""

from bids_deface.vault.errors import VaultError
from bids_deface.vault.keys import Identity, Recipient, load_identity, load_recipient
from bids_deface.vault.restore import RestoreRow, restore_tree
from bids_deface.vault.writer import VaultWriter, check_vault_dir

__all__ = ["Identity", "Recipient", "RestoreRow", "VaultError", "VaultWriter", "check_vault_dir",
           "load_identity", "load_recipient", "restore_tree"]
