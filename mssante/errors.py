"""The one exception family the CLI turns into a one-line message and exit 2.

Modules raise subclasses for problems an operator must fix before a command can
run (a bad configuration, an out-of-date schema, an unreadable key), never for
bugs. Kept import-free so the CLI can catch it without loading the stack.
"""


class OperatorError(Exception):
    """A condition the operator must fix; ``str()`` is the whole message."""
