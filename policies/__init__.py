"""MSSanté and MSS-C rules as pure decision functions (coming with the MSS-C issue).

Facts in, decision out: accept, or reject with an enhanced status code and a
human text, plus the side effects the caller must run (reply, notify, close a
thread). Protocol modules never re-implement a rule; they call these.
"""
