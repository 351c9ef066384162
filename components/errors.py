"""User-facing errors: each one is printed as a single line by the stage runner, without a traceback."""


class GenfoundryError(Exception):
    """A problem the user can fix (bad params, bad data, a diverged run). The message names the fix."""


class ConfigError(GenfoundryError):
    """``params.yaml`` does not describe a valid pipeline."""


class DataError(GenfoundryError):
    """An input dataset is missing, empty, corrupt or inconsistent."""


class DivergenceError(GenfoundryError):
    """Training produced a non-finite or exploding loss; the run is marked FAILED and never registered."""
