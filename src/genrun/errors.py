"""The one exception type for user mistakes: the CLI prints its message on one line and exits 1."""


class GenrunError(Exception):
    """A problem the user can fix (bad path, missing checkpoint, bad value); never a bug in genrun."""
