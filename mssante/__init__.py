"""Composition root and shared kernel of the MSSanté operator stack.

CLI, configuration, application runner, database schema, message store,
mailbox index, audit log, clock. Other packages import the kernel modules
they need (``mssante.store``, ``mssante.index``...); nothing imports
``mssante.cli``.
"""

__version__ = "0.1.0"
