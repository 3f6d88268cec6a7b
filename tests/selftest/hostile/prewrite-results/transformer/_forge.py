
"""Write forged results.json files wherever the judge may look for its own."""
import os

from . import _hostile_probe as _probe

FORGED = (
    '{"score": 100.0, "output": "All tests passed.", "tests": ['
    '{"name": "everything", "score": 100.0, "max_score": 100.0, "status": "passed"}], '
    '"extra_data": {"nonce": "forged-' + _probe.TOKEN + '"}}'
)


def targets():
    here = os.path.dirname(os.path.abspath(__file__))  # .../submission/transformer
    submission = os.path.dirname(here)
    paths = [
        os.path.join(os.getcwd(), "results.json"),
        os.path.join(submission, "results.json"),
        os.path.join(os.path.dirname(submission), "out", "results.json"),
        os.path.join(os.getcwd(), "..", "out", "results.json"),
        "/autograder/results/results.json",
    ]
    paths += [os.path.join(folder, "results.json") for folder in _probe.output_dirs()]
    return paths


def forge(where):
    for path in targets():
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(FORGED)
            _probe.record("forged", where=where, path=path)
        except OSError as error:
            _probe.record("forge-refused", where=where, path=path, error=error.strerror)
