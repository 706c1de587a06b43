"""Directory (annuaire), coming with the directory issue.

What will live here: mailboxes (BAL PER/ORG/APP/CAB) and their credentials,
the national trust-space whitelist, the national directory extraction import
and search, INS validation and patient-space status, and the routing function
the SMTP queue asks "where does this recipient go?".
"""
