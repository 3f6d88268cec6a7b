"""``grade-all --scheduler tcp://HOST:PORT`` or ``--cluster local|slurm|pbs|sge|lsf``: a class on Dask.

One task per submission, on a running Dask scheduler's workers (``--scheduler``) or on a cluster
started here (``--cluster``: a ``LocalCluster`` of ``--jobs`` workers, or batch jobs through
dask-jobqueue with the ``[cluster]`` settings of course.toml). docs/cluster.md has a Slurm
walkthrough and what a class of each size costs.

Same grading as on one machine, by construction: the client packs each submission into bytes
(no shared filesystem needed), the worker lays it out under its own name and grades it with
``grade_all.grade_submission`` (the same sandboxed ``grade`` subprocess and options), and the
client writes what comes back with ``grade_all.store``, which checks the seal. Each worker runs
the grade from its own checkout of this repository; a task refuses to grade with a checkout
whose grader, tests or course.toml differ from the client's (``fingerprint``).

Faults: a worker that dies while grading (a killed node, a pre-empted job) sends the task to
another worker — Dask's ``distributed.scheduler.allowed-failures``, ``--tries`` - 1 on a
cluster started here, the scheduler's own setting (default 3) on a running one. A submission
that fails every try is reported as not graded, with the reason, in gradebook.csv's flags
(never scored). Each grade is written as it arrives, so a stopped grade-all resumes where it
stood.

Workers: ``PYTHONPATH=<checkout> <checkout>/.venv/bin/dask worker tcp://HOST:PORT --nthreads 1``
(one grade at a time per worker process; ``--nworkers N`` for N of them), plus
``--resources GPU=1`` on a GPU node: with ``--gpu`` (or ``[cluster] gpu = true``) a grade that
trains runs only on such a worker, and the training finds CUDA through ``--device auto``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import stat
import sys
import tempfile
import time
import tomllib
import uuid
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from grader import grade_all
from grader.sandbox import intake

CLUSTERS = ("local", "slurm", "pbs", "sge", "lsf")
COURSE = grade_all.ROOT / "course.toml"
# [cluster] in course.toml: the batch jobs of --cluster slurm|pbs|sge|lsf (docs/cluster.md).
SETTINGS = {
    "queue": str,
    "account": str,
    "cores": int,
    "memory": str,
    "processes": int,
    "walltime": str,
    "jobs": int,
    "gpu": bool,
    "grader_root": str,
    "python": str,
    "interface": str,
    "job_extra_directives": list,
    "local_directory": str,
    "log_directory": str,
}
DEFAULTS = {"cores": 2, "memory": "8GB", "walltime": "02:00:00", "jobs": 1, "gpu": False}
# What decides a score: a worker whose copy of these differs from the client's does not grade.
FINGERPRINTED = ("grader", "tests/conftest.py", "tests/support", "tests/public", "tests/hidden", "course.toml")
FINGERPRINTED_SUFFIXES = (".py", ".toml", ".json", ".po")  # the sources: not caches, compiled catalogues, logs
SEND_LIMIT = 4 * intake.MAX_TOTAL_BYTES  # a package past intake's limits is rejected there anyway
LOAD_EVERY = 30.0  # seconds between two lines of per-worker load
MIN_IN_FLIGHT = 64  # tasks submitted ahead (4 per worker past 16 workers)
MAX_WORKERS_SHOWN = 8


class ClusterError(Exception):
    """No cluster to grade on (dask missing, a bad [cluster] section, an unreachable scheduler)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="grade on the workers of this running Dask scheduler, one task per submission (docs/cluster.md)",
    )
    where.add_argument(
        "--cluster",
        choices=CLUSTERS,
        help="start a Dask cluster and grade on it: local (--jobs worker processes here) or "
        "batch jobs through dask-jobqueue, set up by [cluster] in course.toml",
    )
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="on a cluster: a grade that trains waits for a worker started with --resources "
        "GPU=1 (also [cluster] gpu = true in course.toml)",
    )
    parser.add_argument(
        "--tries",
        type=int,
        default=3,
        metavar="N",
        help="tries per submission on a cluster: a worker that dies grading it sends it to another "
        "one, up to N tries in all, then it is reported as not graded (a running scheduler "
        "counts its own distributed.scheduler.allowed-failures instead)",
    )


def load_settings(path: Path = COURSE) -> dict:
    """course.toml's [cluster] section over ``DEFAULTS``."""
    try:
        with open(path, "rb") as f:
            section = tomllib.load(f).get("cluster", {})
    except FileNotFoundError:
        section = {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ClusterError(f"{path}: {error}") from None
    for key, value in section.items():
        if key not in SETTINGS:
            raise ClusterError(f"{path}: unknown [cluster] key {key!r} (known: {', '.join(SETTINGS)})")
        if not isinstance(value, SETTINGS[key]) or (SETTINGS[key] is int and isinstance(value, bool)):
            raise ClusterError(f"{path}: [cluster] {key} must be {SETTINGS[key].__name__}, not {value!r}")
    return {**DEFAULTS, **section}


# --- the submission as bytes -------------------------------------------------------------------


@dataclass(frozen=True)
class Packed:
    """A submission on its way to a worker: its name in SUBMISSIONS (graded under the same name)
    and, for a .zip, its bytes; for a folder, what intake reads of it, zipped (``pack_folder``)."""

    name: str
    folder: bool
    data: bytes


def pack(path: Path) -> Packed:
    if path.is_dir():
        return Packed(path.name, True, pack_folder(path))
    if path.stat().st_size > intake.MAX_ZIP_BYTES:
        raise ClusterError(f"{path.name} is larger than {intake.MAX_ZIP_BYTES // 2**20} MiB")
    return Packed(path.name, False, path.read_bytes())


def pack_folder(folder: Path) -> bytes:
    """The part of a submission folder that intake reads, as a zip whose unpacked copy intake
    reads the same way (same package, files, warnings and rejections): the package it finds, walked
    as it walks it; .py files cut one byte past its size limit (a longer one is rejected all the
    same), other files empty (it only counts them), symbolic links as links (it never follows
    them). With no package or several, only the folders that tell it so."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        try:
            package = intake._find_package(folder, [])
        except intake.IntakeError:
            for candidate in sorted(folder.glob("*/transformer")):
                if candidate.is_dir() and not candidate.parent.is_symlink() and not candidate.is_symlink():
                    archive.writestr(candidate.relative_to(folder).as_posix() + "/", b"")
        else:
            _add_package(archive, folder, package)
    return buffer.getvalue()


def _add_package(archive: zipfile.ZipFile, folder: Path, package: Path) -> None:
    """``package`` walked as intake walks it (``intake._copy_package``), under its path in ``folder``."""
    sent = 0
    for directory, subdirs, files in os.walk(package, followlinks=False):
        relative = Path(directory).relative_to(package)
        subdirs[:] = sorted(
            d
            for d in subdirs
            if d not in intake.IGNORED_DIRS
            and not d.startswith(".")
            and len(relative.parts) < intake.MAX_DEPTH
            and not os.path.islink(os.path.join(directory, d))
        )
        base = Path(directory).relative_to(folder)
        if base.parts:
            archive.writestr(base.as_posix() + "/", b"")
        for name in sorted(files):
            source, entry = Path(directory) / name, (base / name).as_posix()
            mode = os.lstat(source).st_mode
            if stat.S_ISLNK(mode):
                link = zipfile.ZipInfo(entry)
                link.external_attr = (stat.S_IFLNK | 0o777) << 16
                archive.writestr(link, os.readlink(source))
            elif stat.S_ISREG(mode) and name.endswith(".py"):
                with open(source, "rb") as f:
                    data = f.read(intake.MAX_FILE_BYTES + 1)
                sent += len(data)
                if sent > SEND_LIMIT:
                    raise ClusterError(f"the submission's .py files add up to more than {SEND_LIMIT // 2**20} MiB")
                archive.writestr(entry, data)
            elif not name.endswith(".py"):
                archive.writestr(entry, b"")


def unpack(packed: Packed, into: Path) -> Path:
    """Lay a packed submission out in ``into`` under its own name; -> its path."""
    target = into / packed.name
    if not packed.folder:
        target.write_bytes(packed.data)
        return target
    target.mkdir()
    links = []
    with zipfile.ZipFile(io.BytesIO(packed.data)) as archive:
        for entry in archive.infolist():
            relative = PurePosixPath(entry.filename)
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"unsafe entry in a packed submission: {entry.filename[:100]}")
            path = target / relative
            if entry.is_dir():
                path.mkdir(parents=True, exist_ok=True)
            elif stat.S_ISLNK(entry.external_attr >> 16):
                links.append((path, archive.read(entry).decode()))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.read(entry))
    for path, link in links:  # last: no file is ever written through a link
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, path)
    return target


# --- on the worker ------------------------------------------------------------------------------


def fingerprint() -> str:
    """SHA-256 of what decides a score here: the grader, the tests, course.toml (read anew for each
    task, about 20 ms: the grade subprocess reads the checkout as it is now, not as it was)."""
    digest = hashlib.sha256()
    for top in FINGERPRINTED:
        root = grade_all.ROOT / top
        paths = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in paths:
            if path.is_file() and path.suffix in FINGERPRINTED_SUFFIXES and "__pycache__" not in path.parts:
                digest.update(path.relative_to(grade_all.ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def isolation_problem() -> str:
    """Why this worker cannot sandbox a grade, or "" (cached: the probe starts bubblewrap)."""
    from grader.sandbox import isolation

    sandbox = isolation.probe(grade_all.ROOT, worker_uid=False)
    return "" if sandbox.available else sandbox.reason


def grade_task(
    student: str, packed: Packed, options: list[str], timeout: float, expected: str, allow_unisolated: bool
) -> grade_all.Graded:
    """A Dask task: grade one packed submission on this worker, as grade-all grades it locally."""
    from distributed import get_worker

    where, here = get_worker().address, fingerprint()
    if here != expected:
        return grade_all.Graded(
            student,
            host=where,
            problem=(
                f"grader-error: the worker {where} grades with another version of the grader, tests or course.toml "
                f"(fingerprint {here}, the client's {expected}): update its checkout"
            ),
        )
    if isolation_problem() and not allow_unisolated:
        return grade_all.Graded(
            student,
            host=where,
            problem=(
                f"grader-error: the worker {where} has no sandbox isolation ({isolation_problem()}); install "
                "bubblewrap there or pass --allow-unisolated"
            ),
        )
    with tempfile.TemporaryDirectory(prefix="grade-all-submission-") as folder:
        graded = grade_all.grade_submission(student, unpack(packed, Path(folder)), options, timeout)
    graded.host = where
    return graded


# --- on the client ------------------------------------------------------------------------------


def connect(args: argparse.Namespace, settings: dict):
    """-> (client, the cluster started here or None)."""
    try:
        import dask
        from distributed import Client
    except ImportError as error:
        raise ClusterError(
            f"--scheduler and --cluster need Dask ({error}): .venv/bin/pip install "
            "-r requirements.txt (dask, distributed, dask-jobqueue)"
        ) from None
    if args.scheduler:
        try:
            return Client(args.scheduler, timeout="30s"), None
        except (OSError, TimeoutError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {args.scheduler}: {error}") from None
    dask.config.set({"distributed.scheduler.allowed-failures": max(0, args.tries - 1)})
    if args.cluster == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=max(1, args.jobs),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            resources={"GPU": 1} if settings["gpu"] else None,
        )
        return Client(cluster), cluster
    try:
        import dask_jobqueue
    except ImportError as error:
        raise ClusterError(
            f"--cluster {args.cluster} needs dask-jobqueue ({error}): .venv/bin/pip install -r requirements.txt"
        ) from None
    kind = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}[args.cluster]
    root = settings.get("grader_root", str(grade_all.ROOT))
    extra_directives = list(settings.get("job_extra_directives", []))
    worker_args = ["--nthreads", "1"]  # one grade at a time per worker process (the last --nthreads counts)
    if settings["gpu"]:
        worker_args += ["--resources", "GPU=1"]
        if args.cluster == "slurm" and not any("gres" in d or "gpus" in d for d in extra_directives):
            extra_directives.append("--gres=gpu:1")
    account = "account" if args.cluster in ("slurm", "pbs") else "project"  # -A; SGE and LSF call it a project
    options = {
        "queue": settings.get("queue"),
        account: settings.get("account"),
        "cores": settings["cores"],
        "memory": settings["memory"],
        "processes": settings.get("processes", settings["cores"]),
        "walltime": settings["walltime"],
        "interface": settings.get("interface"),
        "python": settings.get("python", f"{root}/.venv/bin/python"),
        "job_script_prologue": [f"cd {root}", f"export PYTHONPATH={root}"],
        "job_extra_directives": extra_directives,
        "worker_extra_args": worker_args,
        "local_directory": settings.get("local_directory"),
        "log_directory": settings.get("log_directory"),
    }
    cluster = getattr(dask_jobqueue, kind)(**{k: v for k, v in options.items() if v is not None})
    cluster.scale(jobs=settings["jobs"])
    return Client(cluster), cluster


def trains(args: argparse.Namespace) -> bool:
    return not args.no_train and (args.parts is None or "translation" in args.parts.split(","))


def load_line(client, done_by: dict[str, int], unfinished: int) -> str:
    """``workers: 2 (2 grading, 5 waiting); graded per worker: 127.0.0.1:40211 3, ...``"""
    from grader.i18n import _

    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    grading = sum(min(len(keys), workers.get(w, {}).get("nthreads", 1)) for w, keys in client.processing().items())
    shown = sorted(set(workers) | set(done_by))
    counts = [f"{w.removeprefix('tcp://')} {done_by.get(w, 0)}" for w in shown[:MAX_WORKERS_SHOWN]]
    counts += ["..."] if len(shown) > MAX_WORKERS_SHOWN else []
    return _(
        "workers: {workers} ({grading} grading, {waiting} waiting); graded per worker: {counts}",
        workers=len(workers),
        grading=grading,
        waiting=max(0, unfinished - grading),
        counts=", ".join(counts),
    )


def grade_many(todo: list[tuple[str, Path]], args: argparse.Namespace, started: float) -> dict[str, str]:
    """``grade_all.grade_many`` on a Dask cluster: each finished grade is written (``store``) and
    shown as it arrives, with per-worker load every ``LOAD_EVERY`` s; -> the problems, by student."""
    from grader.i18n import _

    settings = load_settings()
    settings["gpu"] = settings["gpu"] or args.gpu
    if not todo:  # everyone graded already: no batch jobs for nothing
        return {}
    client, cluster = connect(args, settings)
    problems: dict[str, str] = {}
    try:
        from distributed import as_completed

        print(
            _(
                "Dask scheduler {address}; dashboard: {dashboard}",
                address=client.scheduler.address,
                dashboard=client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else "-",
            ),
            file=sys.stderr,
            flush=True,
        )
        options, timeout = grade_all.grade_options(args), args.total_timeout + 300
        resources = {"GPU": 1} if settings["gpu"] and trains(args) else None
        expected, waiting = fingerprint(), iter(todo)
        futures, done_by, k, busy, cpu = {}, {}, 0, 0.0, 0.0
        finished = as_completed()

        def in_flight_enough() -> bool:
            """A few tasks per worker (at least ``MIN_IN_FLIGHT``) are in flight: the scheduler balances
            them, and the client holds only those submissions' bytes, whatever the size of the class."""
            return len(futures) >= max(MIN_IN_FLIGHT, 4 * len(client.scheduler_info(n_workers=-1)["workers"]))

        def submit_more() -> None:
            while len(futures) < MIN_IN_FLIGHT or not in_flight_enough():
                student, path = next(waiting, (None, None))
                if student is None:
                    return
                try:
                    packed = pack(path)
                except (OSError, ClusterError) as error:
                    problems[student] = f"grader-error: could not be sent to the cluster: {error}"[:300]
                    report(student, problems[student], 0.0)
                    continue
                future = client.submit(
                    grade_task,
                    student,
                    packed,
                    options,
                    timeout,
                    expected,
                    args.allow_unisolated,
                    key=f"grade-{student}-{uuid.uuid4().hex[:8]}",
                    pure=False,
                    resources=resources,
                    retries=max(0, args.tries - 1),
                )
                futures[future] = student
                finished.add(future)

        def report(student: str, problem: str, seconds: float) -> None:
            nonlocal k
            k += 1
            print(
                grade_all.progress_line(k, len(todo), student, problem, seconds, time.monotonic() - started),
                file=sys.stderr,
                flush=True,
            )

        shown_load = time.monotonic()
        try:
            submit_more()
            while futures:
                for future in finished.next_batch(block=False) or []:
                    student = futures.pop(future)
                    try:
                        graded = future.result()
                    except Exception as error:  # every try failed (KilledWorker), or the cluster could not run it
                        reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                        hint = (
                            " (start the scheduler and the workers with PYTHONPATH=<checkout>, docs/cluster.md)"
                            if "No module named 'grader'" in reason or "deserializ" in reason
                            else ""
                        )
                        problems[student] = f"grader-error: could not be graded on the cluster: {reason}{hint}"
                        report(student, problems[student], 0.0)
                        continue
                    problem = grade_all.store(graded, args.out)
                    if problem:
                        problems[student] = problem
                    done_by[graded.host] = done_by.get(graded.host, 0) + 1
                    busy, cpu = busy + graded.seconds, cpu + graded.cpu_seconds
                    report(student, problem, graded.seconds)
                    future.release()
                submit_more()
                if time.monotonic() - shown_load >= LOAD_EVERY:
                    print(load_line(client, done_by, len(todo) - k), file=sys.stderr, flush=True)
                    shown_load = time.monotonic()
                time.sleep(0.1)
        except KeyboardInterrupt:
            client.cancel(list(futures))
            print(
                _("interrupted: {k} of {n} written; the same command again grades the rest", k=k, n=len(todo)),
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(130) from None  # what a shell reports for Ctrl-C, without a traceback
        wall = time.monotonic() - started
        print(load_line(client, done_by, 0), file=sys.stderr, flush=True)
        print(
            _(
                "on the cluster: {wall} wall, {cpu} of CPU and {busy} of grading on the workers: {speedup}× "
                "the speed of one worker grading one submission at a time",
                wall=grade_all.format_duration(wall),
                cpu=grade_all.format_duration(cpu),
                busy=grade_all.format_duration(busy),
                speedup=f"{busy / max(wall, 1e-9):.2f}",
            ),
            file=sys.stderr,
            flush=True,
        )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return problems
