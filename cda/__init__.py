"""CDA R2 / IHE XDM and the envoi-en-Y bridge (coming with the Y bridge issue).

What will live here: safe parsing and building of XDM packages and CDA headers,
a DMP-like document store with versions and visibility, and the bridge that
deposits documents and fans them out by MSSanté.
"""
