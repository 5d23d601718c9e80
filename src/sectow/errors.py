"""The one exception type for mistakes a user can cause: the CLI prints it as one line, exit code 2."""


class UserError(Exception):
    """Bad input (config, data, paths). The message names the file, row or key, in the user's terms."""
