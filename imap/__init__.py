"""IMAP server (coming with the IMAP issue).

What will live here: a sans-IO IMAP4rev1/IMAP4rev2 parser and session state
machine, and the mailbox view over the shared mailbox index
(:mod:`mssante.index`), which is a cache: the stored message is the truth.
"""
