"""Trusted code that runs *next to* the code under test.

Both transports use it: in-process (``make check``) it is imported directly; for grading,
the sandbox worker gets its own copy. It must therefore import nothing from the rest of
the grader and nothing from the tests.
"""
