"""The errors of the datasets package: what a caller catches or filters."""


class DatasetError(ValueError):
    """A dataset cannot be found, read or used as asked; the message says how to fix it."""


class DatasetWarning(UserWarning):
    """Something was loaded but deserves attention (unverified files, skipped images …)."""
