"""The one error type users see.

Every failure a user can fix (bad input, missing package, corrupt file) is raised as a
``UserError`` whose message is one line saying what is wrong and what to do. The CLIs and
invoke tasks print that line and exit non-zero; anything else is a bug and keeps its traceback.
"""

import sys
from typing import Callable


class UserError(Exception):
    """A problem the user can fix; the message is one actionable line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class MissingDependency(UserError):
    """An optional package is not installed; the message names the command that installs it."""

    def __init__(self, what: str, install: str):
        super().__init__(f"{what} is not installed: run `{install}`")


def print_result(produce: Callable[[], str]) -> int:
    """A command-line body: print what ``produce()`` returns and give exit code 0, or, on a UserError,
    print its one ``error:`` line on stderr instead and give 2."""
    try:
        text = produce()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0
