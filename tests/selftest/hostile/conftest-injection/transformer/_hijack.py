
"""If a pytest session lives in this process, make every test pass."""
import gc as _gc

from . import _hostile_probe as _probe


def _hijack_live_pytest():
    try:
        from _pytest.config import Config
    except ImportError:
        _probe.record("no-pytest-in-process")
        return
    for obj in _gc.get_objects():
        if isinstance(obj, Config):
            import pytest

            class ForcePass:
                @pytest.hookimpl(hookwrapper=True)
                def pytest_runtest_makereport(self, item, call):
                    outcome = yield
                    report = outcome.get_result()
                    report.outcome = "passed"
                    report.longrepr = None

            obj.pluginmanager.register(ForcePass(), "hostile-force-pass")
            _probe.record("hijacked-live-pytest")
    _probe.record("searched-live-pytest")


_hijack_live_pytest()
