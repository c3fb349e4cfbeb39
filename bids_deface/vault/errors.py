"""The one exception of the vault: a message a curator can act on, one line, never a secret."""


class VaultError(Exception):
    """A key, an entry or a file the vault cannot use; the message says which and why."""
