"""User-facing errors: the CLI prints ``error: <message>`` and exits with status 2 for these."""


class IcmError(Exception):
    """Base class of every error whose message is meant for the user, not a traceback."""


class InputError(IcmError, ValueError):
    """An input (image, tensor, option or configuration) that cannot be used as given."""


class BitstreamError(IcmError, ValueError):
    """A file that is not a valid icmbridge bitstream (empty, truncated, corrupt, too new)."""


class ModelMismatchError(IcmError):
    """A bitstream written by an encoder/entropy model other than the decoder's."""
