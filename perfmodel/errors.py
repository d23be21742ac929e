"""User-facing errors: one line that names the bad value and what is allowed."""


class PerfmodelError(ValueError):
    """Bad input. The CLI prints ``error: <message>`` and exits with status 2."""


class ProfileError(PerfmodelError):
    """A hardware profile file is malformed."""
