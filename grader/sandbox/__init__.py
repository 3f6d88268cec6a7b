"""The sandbox: run a student's code in a separate, limited worker process and talk to it
through a data-only protocol. See ``process.py`` (the process and its limits), ``protocol.py``
(the wire), ``worker.py`` (the other end), ``proxy.py`` (the ``impl`` the tests see),
``intake.py`` (what of a submission is let in), ``static_check.py`` and ``tripwires.py``
(banned building blocks). This package's ``__init__`` imports nothing: the worker runs a copy
of some of its files without the rest of the grader.
"""
