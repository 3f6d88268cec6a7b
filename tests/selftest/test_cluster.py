"""grade-all on a Dask cluster (grader/cluster.py), against a real scheduler and real workers.

A scheduler and two workers start on 127.0.0.1 with the ``dask`` command-line tools, as an
instructor would start them (random free ports, one thread each), and stop even when a test fails.
A small class — the reference twice (a folder and a nested .zip), the stubs, one broken part, one
submission that kills its own process at import, one endless loop — is graded through
``--scheduler`` and, at the same time, by the local process pool: the two gradebook.csv must be
the same bytes. A second cluster loses a worker in the middle of a run: every submission is
still graded, exactly once. Only ``masks`` and ``feed_forward`` are graded, with short time
limits, so that the whole file stays well under two minutes on two cores.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from builders import release
from grader import cluster, grade_all
from grader.sandbox import intake
from grader.sandbox.process import die_with_parent

distributed = pytest.importorskip("distributed", reason="Dask is not installed (pip install -r requirements.txt)")

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).parent / "dask"
PARTS = "masks,feed_forward"
LIMITS = ["--call-timeout", "3", "--part-timeout", "30", "--total-timeout", "120"]
STUDENTS = ["broken", "killer", "loop", "sol_a", "sol_b", "stubs"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskCluster:
    """``dask scheduler`` and ``dask worker``s on the loopback interface, each in its own process
    group (a worker is a nanny and its worker process: ``kill_worker`` takes both, as a lost node)."""

    def __init__(self, workers: int):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the checkout the tasks run from
        # die_with_parent: a test run killed before its teardown must not leave a cluster running
        # (its workers, who lose their nanny and scheduler too, give up after --death-timeout)
        common = dict(
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.scheduler = subprocess.Popen(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                self.address.rsplit(":", 1)[1],
                "--no-dashboard",
                "--no-show",
            ],
            **common,
        )
        self.workers = [
            subprocess.Popen(
                [
                    str(DASK),
                    "worker",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    "--death-timeout",
                    "60",
                ],
                **common,
            )
            for i in range(workers)
        ]
        self.client = None
        try:
            self.client = distributed.Client(self.address, timeout="60s")
            self.client.wait_for_workers(workers, timeout=120)
        except BaseException:
            self.stop()
            raise

    def kill_worker(self, index: int) -> None:
        os.killpg(self.workers[index].pid, signal.SIGKILL)
        self.workers[index].wait()

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in [*self.workers, self.scheduler]:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def make_class(base: Path) -> Path:
    """The reference as a folder and as a nested zip, the stubs, a syntax error in feed_forward.py,
    a feed_forward.py that SIGKILLs its own process at import, an endless loop in padding_mask."""
    package, ignore = ROOT / "solutions" / "transformer", shutil.ignore_patterns("__pycache__")
    shutil.copytree(package, base / "sol_a" / "transformer", ignore=ignore)
    with zipfile.ZipFile(base / "sol_b.zip", "w") as zf:
        for path in sorted(package.glob("*.py")):
            zf.write(path, f"sol_b/transformer/{path.name}")
    shutil.copytree(ROOT / "assignments" / "transformer", base / "stubs" / "transformer", ignore=ignore)
    for student in ("broken", "killer", "loop"):
        shutil.copytree(package, base / student / "transformer", ignore=ignore)
    (base / "broken" / "transformer" / "feed_forward.py").write_text("class PositionwiseFeedForward(:\n    pass\n")
    killer = base / "killer" / "transformer" / "feed_forward.py"
    killer.write_text("import os\nos.kill(os.getpid(), 9)\n" + killer.read_text())
    masks = base / "loop" / "transformer" / "masks.py"
    text = masks.read_text()
    head = "def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:\n"
    assert head in text
    masks.write_text(text.replace(head, head + "    while True:\n        pass\n", 1))
    return base


def grade_all_command(submissions: Path, out: Path, *options: str, parts: str = PARTS) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grader",
        "grade-all",
        str(submissions),
        "--out",
        str(out),
        "--parts",
        parts,
        "--no-train",
        "--no-lock-repo",
        *LIMITS,
        *options,
    ]  # --no-lock-repo: leave the checkout's modes alone


def finished_lines(stderr: str) -> list[tuple[int, str]]:
    """(k, student) of each ``[k/N] student: ...`` progress line."""
    return [(int(k), student) for k, student in re.findall(r"^\[(\d+)/\d+\] (\S+): ", stderr, re.M)]


@pytest.fixture(scope="module")
def graded_both_ways(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    submissions = make_class(base / "class")
    dask = DaskCluster(workers=2)
    try:
        runs = {
            "local": subprocess.Popen(
                grade_all_command(submissions, base / "local", "--jobs", "2"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            "dask": subprocess.Popen(
                grade_all_command(submissions, base / "dask", "--scheduler", dask.address),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        }
        logs = {}
        for name, run in runs.items():
            logs[name] = run.communicate(timeout=600)[1]
            assert run.returncode == 0, logs[name]
        again = subprocess.run(
            grade_all_command(submissions, base / "dask", "--scheduler", dask.address),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        dask.stop()
    return base, logs, again


def test_the_cluster_writes_the_same_gradebook_as_the_local_pool(graded_both_ways):
    base, logs, _again = graded_both_ways
    gradebook = (base / "dask" / "gradebook.csv").read_bytes()
    assert gradebook == (base / "local" / "gradebook.csv").read_bytes(), logs
    rows = {row["student"]: row for row in csv.DictReader(gradebook.decode().splitlines())}
    assert set(rows) == {"(points possible)", *STUDENTS}
    assert rows["sol_a"]["total"] == rows["sol_b"]["total"] == "10" and rows["stubs"]["total"] == "0"
    for student in ("broken", "killer"):  # their own part only
        assert (rows[student]["masks"], rows[student]["feed_forward"]) == ("6", "0"), rows[student]
    assert rows["loop"]["feed_forward"] == "4" and float(rows["loop"]["masks"]) < 6
    assert not any(row["flags"] for row in rows.values()), rows
    for student in STUDENTS:  # the same files in each student's folder, sealed
        assert sorted(p.name for p in (base / "dask" / student).iterdir()) == ["grade.log", "report.md", "results.json"]
        assert grade_all.load_valid_results(base / "dask" / student / "results.json") is not None


def test_the_cluster_run_shows_progress_load_and_accounting(graded_both_ways):
    _base, logs, _again = graded_both_ways
    assert sorted(s for _, s in finished_lines(logs["dask"])) == STUDENTS
    assert [k for k, _ in finished_lines(logs["dask"])] == list(range(1, 7))
    assert "Dask scheduler tcp://127.0.0.1:" in logs["dask"]
    assert re.search(
        r"^workers: 2 \(\d+ grading, \d+ waiting\); graded per worker: 127\.0\.0\.1:\d+ \d+, ", logs["dask"], re.M
    ), logs["dask"]
    assert re.search(
        r"^on the cluster: \S+ wall, \S+ of CPU and \S+ of grading on the workers: [\d.]+× ", logs["dask"], re.M
    ), logs["dask"]


def test_a_second_cluster_run_resumes(graded_both_ways):
    _base, _logs, again = graded_both_ways
    assert again.returncode == 0, again.stderr
    assert "6 submissions, 6 already graded, grading 0" in again.stderr


def test_a_worker_killed_in_the_middle_of_a_run_loses_nothing(tmp_path):
    """Four submissions on two workers; one worker (nanny and all) is killed while it grades.
    The scheduler sends its task to the other worker: each student is graded exactly once."""
    package = ROOT / "solutions" / "transformer"
    students = ["ana", "bo", "cy", "di"]
    for student in students:
        shutil.copytree(
            package, tmp_path / "class" / student / "transformer", ignore=shutil.ignore_patterns("__pycache__")
        )
    dask = DaskCluster(workers=2)
    try:
        run = subprocess.Popen(
            grade_all_command(tmp_path / "class", tmp_path / "out", "--scheduler", dask.address, parts="masks"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        victim = dask.client.scheduler_info(n_workers=-1)["workers"]
        victim_address = next(a for a, info in victim.items() if info.get("name") == "w0")
        deadline = time.monotonic() + 120
        while not dask.client.processing().get(victim_address) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dask.client.processing().get(victim_address), "the worker never got a grade"
        time.sleep(2)  # well into its grade: the judge has started
        interrupted = dask.client.processing().get(victim_address)
        dask.kill_worker(0)
        stderr = run.communicate(timeout=300)[1]
    finally:
        dask.stop()
    assert run.returncode == 0, stderr
    assert interrupted, "the worker was idle when it was killed"
    assert sorted(s for _, s in finished_lines(stderr)) == students, stderr  # each once
    assert [k for k, _ in finished_lines(stderr)] == [1, 2, 3, 4]
    with open(tmp_path / "out" / "gradebook.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["student"] != "(points possible)"]
    assert [(r["student"], r["total"], r["flags"]) for r in rows] == [(s, "6", "") for s in students], stderr


# --- without a cluster ------------------------------------------------------------------------------


def intake_view(path: Path) -> tuple[list[str], list[str], dict[str, bytes]]:
    """What intake makes of a submission: its files, its warnings and their contents (or its rejection)."""
    try:
        submission = intake.prepare(path)
    except intake.IntakeError as error:
        return ["rejected"], [str(error)], {}
    try:
        contents = {name: (submission.root / name).read_bytes() for name in submission.files}
        return submission.files, submission.warnings, contents
    finally:
        submission.cleanup()


def test_a_packed_folder_reads_to_intake_as_the_folder_does(tmp_path):
    """Links, files that are not Python, caches, a nested folder, one .py file past the size limit
    (rejected either way), several packages (rejected either way), a flat package."""
    nested = tmp_path / "alice" / "work" / "transformer"
    shutil.copytree(ROOT / "solutions" / "transformer", nested, ignore=shutil.ignore_patterns("__pycache__"))
    (nested / "notes.txt").write_text("not Python\n")
    (nested / "__pycache__").mkdir()
    (nested / "__pycache__" / "x.py").write_text("ignored\n")
    (nested / "conftest.py").write_text("raise SystemExit\n")
    os.symlink("/etc/passwd", nested / "leak.py")
    (tmp_path / "alice" / "big_data.bin").write_bytes(b"\0" * 10_000_000)  # outside the package: not sent
    too_big = tmp_path / "bob" / "transformer"
    too_big.mkdir(parents=True)
    (too_big / "masks.py").write_bytes(b"#" * (intake.MAX_FILE_BYTES + 10))
    for name in ("x", "y"):
        (tmp_path / "carol" / name / "transformer").mkdir(parents=True)
    (tmp_path / "dan").mkdir()
    (tmp_path / "dan" / "masks.py").write_text("X = 1\n")
    for student in ("alice", "bob", "carol", "dan"):
        packed = cluster.pack(tmp_path / student)
        assert len(packed.data) < 1_000_000 + intake.MAX_FILE_BYTES
        copy = cluster.unpack(packed, _fresh(tmp_path / "unpacked" / student))
        assert copy.name == student
        assert intake_view(copy) == intake_view(tmp_path / student), student
    assert "symbolic links are not followed" in " ".join(intake_view(tmp_path / "alice")[1])


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


def test_a_zip_travels_as_its_own_bytes(tmp_path):
    archive = tmp_path / "eve.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("transformer/masks.py", "X = 1\n")
    packed = cluster.pack(archive)
    assert (packed.name, packed.folder, packed.data) == ("eve.zip", False, archive.read_bytes())
    copy = cluster.unpack(packed, _fresh(tmp_path / "worker"))
    assert copy.name == "eve.zip" and copy.read_bytes() == archive.read_bytes()


def test_a_worker_with_another_grader_does_not_grade(monkeypatch):
    monkeypatch.setattr(distributed, "get_worker", lambda: argparse.Namespace(address="tcp://10.0.0.9:1"))
    graded = cluster.grade_task("ana", cluster.Packed("ana", True, b""), [], 10, "0" * 16, False)
    assert graded.files == {} and "another version of the grader" in graded.problem
    assert graded.problem.startswith("grader-error: ")


def test_the_hand_outs_do_not_install_dask():
    text = release.hand_out_requirements()
    assert "torch==" in text and "Babel==" in text
    assert not re.search(r"^(dask|distributed|dask-jobqueue)\b", text, re.M | re.I), text
    assert re.search(r"^distributed==", (ROOT / "requirements.txt").read_text(), re.M)


def test_the_cluster_settings_are_checked(tmp_path):
    course = tmp_path / "course.toml"
    course.write_text('[cluster]\nqueue = "gpu"\ncores = 8\njobs = 4\ngpu = true\n')
    assert cluster.load_settings(course) == {**cluster.DEFAULTS, "queue": "gpu", "cores": 8, "jobs": 4, "gpu": True}
    for bad, said in (
        ('cores = "8"', "cores must be int, not '8'"),
        ("nodes = 3", "unknown [cluster] key 'nodes'"),
        ("gpu = 1", "gpu must be bool, not 1"),
    ):
        course.write_text(f"[cluster]\n{bad}\n")
        with pytest.raises(cluster.ClusterError, match=re.escape(said)):
            cluster.load_settings(course)


def test_without_dask_the_instructor_is_told_what_to_install(monkeypatch, tmp_path, capsys):
    (tmp_path / "class" / "ana").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    from grader.__main__ import main

    status = main(
        ["grade-all", str(tmp_path / "class"), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:1"]
    )
    assert status == 2
    said = capsys.readouterr().err
    assert "need Dask" in said and "pip install -r requirements.txt" in said, said


def test_the_slurm_job_script_follows_the_cluster_section(monkeypatch, tmp_path):
    """The batch script that --cluster slurm would submit (built, not submitted)."""
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    monkeypatch.setattr(dask_jobqueue.core.JobQueueCluster, "scale", lambda self, *args, **kwargs: None)
    course = tmp_path / "course.toml"
    course.write_text(
        '[cluster]\nqueue = "cpu"\naccount = "dl"\ncores = 8\nprocesses = 4\nmemory = "32GB"\n'
        'gpu = true\ngrader_root = "/shared/transformer"\n'
    )
    args = argparse.Namespace(scheduler=None, cluster="slurm", tries=3, jobs=1)
    client, started = cluster.connect(args, cluster.load_settings(course))
    try:
        script = started.job_script()
    finally:
        client.close()
        started.close()
    for line in (
        "#SBATCH -p cpu",
        "#SBATCH -A dl",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --gres=gpu:1",
        "cd /shared/transformer",
        "export PYTHONPATH=/shared/transformer",
    ):
        assert line in script.splitlines(), (line, script)
    worker = next(line for line in script.splitlines() if "dask_worker" in line)
    assert worker.startswith("/shared/transformer/.venv/bin/python -m distributed.cli.dask_worker ")
    assert "--nworkers 4" in worker and worker.split("--nthreads ")[-1].startswith("1 ")  # the last one counts
    assert "--resources GPU=1" in worker
