"""The one exception type users see: a sentence that names the culprit."""


class XstiltsError(Exception):
    """A problem with the user's input (config, task spec, data file).

    The CLI prints the message alone and exits with status 2; nothing else is
    caught, so real bugs still show their traceback.
    """


class DamagedFile(XstiltsError):
    """A file of a run folder that cannot be read back (truncated or corrupt)."""

    def __init__(self, path: object, reason: object) -> None:
        first_line = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
        super().__init__(f"{path}: damaged, cannot be read ({first_line or type(reason).__name__})")
        self.path = path


class DiskFull(XstiltsError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT)."""

    PREFIX = "no space left on the device of "

    def __init__(self, folder: object) -> None:
        super().__init__(f"{self.PREFIX}{folder}")
        self.folder = folder
