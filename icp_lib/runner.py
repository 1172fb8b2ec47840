"""Run the quarterly job: four notebooks per segment, rendered for stakeholders.

:func:`run_quarterly` loads the config and the modeling table once, saves the
table where every notebook can read it, then runs the four notebooks of each
segment in order with papermill. Segments run in parallel worker processes,
up to the number of cores; each worker renders its notebooks to HTML itself
(nbconvert in-process, no new program per report).

The four notebooks of a segment share one kernel, reset between notebooks,
so the kernel starts and the libraries are imported once per segment.
Kernels talk to the runner over Unix domain sockets (ZeroMQ ``ipc``
transport) in a private temporary folder per kernel, not over TCP ports: a
TCP port picked as free by one worker can be taken by another worker's
kernel before it binds, and sockets in distinct folders cannot collide.
Where Unix sockets are not available (Windows) kernels fall back to TCP.

Everything is built in a staging folder next to ``reports/<quarter>`` and
moved into place only at the end. A folder of an earlier run of the same
quarter is kept as ``reports/<quarter>.previous`` (one generation); folders
of other quarters are never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from . import _html
from .config import Config, load_config, resolve_data_dir
from .errors import ConfigError

__all__ = [
    "NOTEBOOKS",
    "RESULT_FILES",
    "NotebookRun",
    "SegmentRun",
    "QuarterlyRun",
    "Progress",
    "run_quarterly",
    "find_notebooks",
]

log = logging.getLogger(__name__)

NOTEBOOKS = (
    "01_data_audit",
    "02_model_fit",
    "03_grade_calibration",
    "04_quarterly_review",
)
RESULT_FILES = ("audit.json", "model.json", "scores.csv", "review.json")
# No cell of the kit's notebooks comes near this on the data sets it was built
# on; a kernel that died mid-cell would otherwise be waited for forever.
CELL_TIMEOUT = 1800.0


DEFAULT_KERNEL = "python3"
NOTEBOOKS_ENV = "ICP_NOTEBOOKS_DIR"
KEY_PACKAGES = (
    "icp-kit",
    "pandas",
    "numpy",
    "scipy",
    "statsmodels",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "papermill",
    "nbconvert",
    "ipykernel",
    "duckdb",
    "pydantic",
)


@dataclass(frozen=True)
class NotebookRun:
    """How one notebook of one segment went.

    ``status`` is "ok", "failed" or "skipped" (an earlier notebook of the
    segment failed). ``startup_seconds`` is the time spent starting the
    kernel and running the setup cell (imports, reading the table).
    """

    segment: str
    notebook: str
    status: str
    seconds: float
    startup_seconds: float | None = None
    render_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class SegmentRun:
    """How one segment went: its notebooks and, if it failed, why."""

    name: str
    label: str
    status: str
    error: str | None
    notebooks: tuple[NotebookRun, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class QuarterlyRun:
    """The result of :func:`run_quarterly`."""

    quarter: str
    report_dir: Path
    segments: tuple[SegmentRun, ...]
    seconds: float
    previous_dir: Path | None = None

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the segments that failed."""
        return tuple(s.name for s in self.segments if s.status != "ok")


@dataclass(frozen=True)
class Progress:
    """One progress event: a notebook of a segment finished."""

    done: int
    total: int
    segment: str
    notebook: str
    status: str
    seconds: float
    note: str = ""

    def to_text(self) -> str:
        """Return the event as one line, e.g. ``[2/12] b2c 02_model_fit ... 8.1 s``."""
        if self.note:
            return self.note
        tail = f"{self.seconds:.1f} s"
        if self.status != "ok":
            tail += f" ({self.status})"
        return f"[{self.done}/{self.total}] {self.segment} {self.notebook} ... {tail}"


@dataclass(frozen=True)
class _Options:
    notebooks_dir: str
    kernel_name: str
    timeout: float | None
    cwd: str
    threads: int
    fresh_kernels: bool = False


@dataclass(frozen=True)
class _SegmentTask:
    config_path: str
    segment: str
    label: str
    quarter: str
    out_dir: str
    table_dir: str
    options: _Options


@dataclass(frozen=True)
class _Plan:
    config: Config
    quarter: str
    fingerprints: dict[str, str]
    tasks: tuple[_SegmentTask, ...]
    rejected: tuple[SegmentRun, ...]


def find_notebooks(notebooks_dir: str | os.PathLike | None = None) -> Path:
    """Return the folder holding the four notebooks.

    The notebooks live in the kit's ``notebooks/`` folder next to the
    ``icp_lib`` package (an editable install, as ``make install`` does).
    Otherwise the environment variable ``ICP_NOTEBOOKS_DIR`` or
    ``./notebooks`` is used.

    Raises
    ------
    ConfigError
        If the folder or one of the four notebooks is missing.
    """
    candidates = [Path(notebooks_dir)] if notebooks_dir else _default_notebook_dirs()
    for folder in candidates:
        if folder.is_dir():
            _check_notebooks(folder)
            return folder.resolve()
    raise ConfigError(
        "notebooks folder not found; looked in "
        + ", ".join(str(c) for c in candidates)
        + ". Run from the kit's folder or pass --notebooks DIR."
    )


def _default_notebook_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parent.parent / "notebooks"]
    if os.environ.get(NOTEBOOKS_ENV):
        dirs.insert(0, Path(os.environ[NOTEBOOKS_ENV]))
    return [*dirs, Path.cwd() / "notebooks"]


def _check_notebooks(folder: Path) -> None:
    missing = [n for n in NOTEBOOKS if not (folder / f"{n}.ipynb").is_file()]
    if missing:
        raise ConfigError(
            f"notebooks folder {folder} lacks "
            + ", ".join(f"{m}.ipynb" for m in missing)
            + f"; it must hold all of {', '.join(NOTEBOOKS)}"
        )


def normalize_quarter(text: str) -> str:
    """Return a quarter as ``YYYYQn``, accepting ``2026q3`` or ``2026-Q3``.

    Raises
    ------
    ConfigError
        If the text is not a quarter.
    """
    from .data import parse_quarter

    year, number = parse_quarter(text)
    return f"{year}Q{number}"


def run_quarterly(
    config_path: str | os.PathLike,
    *,
    quarter: str | None = None,
    reports_dir: str | os.PathLike = "reports",
    notebooks_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    kernel_name: str = DEFAULT_KERNEL,
    timeout: float | None = CELL_TIMEOUT,
    fresh_kernels: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> QuarterlyRun:
    """Run the four notebooks for every segment of a client.

    Parameters
    ----------
    config_path : str or path-like
        The client config (YAML).
    quarter : str, optional
        The review quarter, e.g. "2026Q3"; default the last complete quarter
        in the data.
    reports_dir : str or path-like
        The folder that receives ``<quarter>/``.
    notebooks_dir : str or path-like, optional
        The folder with the four notebooks; see :func:`find_notebooks`.
    jobs : int, optional
        Segments run at once; default the number of cores.
    kernel_name : str
        The Jupyter kernel. The default, "python3", is the interpreter that
        runs this function.
    timeout : float, optional
        Seconds a single cell may run; default ``CELL_TIMEOUT`` (30 minutes),
        which also bounds the wait when a kernel dies mid-cell (for example
        killed for lack of memory). None: no limit.
    fresh_kernels : bool, default False
        Start a new kernel for every notebook instead of one per segment
        (reset between notebooks). Slower; for checking that a notebook
        does not depend on anything the kernel kept.
    progress : callable, optional
        Called with a :class:`Progress` each time a notebook finishes.

    Returns
    -------
    QuarterlyRun
        Where the reports are and how each segment went. A failed segment
        does not stop the others; see ``QuarterlyRun.failed``.

    Raises
    ------
    ConfigError, DataError
        If the config, the data or the notebooks cannot be used at all.
        Nothing in ``reports_dir`` changes then (it is created if missing).
    """
    started = time.perf_counter()
    config = load_config(config_path)
    quarter = normalize_quarter(quarter) if quarter else None
    jobs = jobs or os.cpu_count() or 1
    options = _Options(
        notebooks_dir=str(find_notebooks(notebooks_dir)),
        kernel_name=kernel_name,
        timeout=timeout,
        cwd=os.getcwd(),
        threads=max(1, (os.cpu_count() or 1) // jobs),
        fresh_kernels=fresh_kernels,
    )
    reports = Path(reports_dir).resolve()
    reports.mkdir(parents=True, exist_ok=True)

    # Staging lives inside reports/ so the final move is a rename on one disk
    # and so notebooks find earlier quarters at ../../<quarter> as usual.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=reports))
    staging.chmod(0o755)
    try:
        plan = _plan_run(config, quarter=quarter, staging=staging, options=options)
        _check_same_client(reports / plan.quarter, config)
        ran = _run_tasks(plan.tasks, jobs=jobs, progress=progress)
        segments = _in_config_order(config, [*plan.rejected, *ran])
        seconds = time.perf_counter() - started
        shutil.rmtree(staging / "_table", ignore_errors=True)
        _write_outputs(staging, plan, segments, seconds=seconds)
        target = reports / plan.quarter
        if target.exists() and all(seg.status != "ok" for seg in segments):
            # A run in which every segment failed never replaces a finished
            # one: it is kept beside it for reading the errors.
            target = reports / f"{plan.quarter}.failed"
        final, previous = _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return QuarterlyRun(plan.quarter, final, tuple(segments), seconds, previous)


def _check_quarter_has_data(table, quarter: str) -> None:
    """Refuse a review quarter that starts after the last dated record."""
    from . import data

    if not table.has_dates:
        return
    last = table.frame["record_date"].max()
    start, _ = data.quarter_bounds(quarter)
    if start > last:
        raise ConfigError(
            f"quarter {quarter} starts after the last record of the data "
            f"({last:%Y-%m-%d}), so there is nothing to review; choose a quarter "
            f"up to {data.last_complete_quarter(table)} or leave QUARTER empty "
            "for the last complete one"
        )


def _check_same_client(final: Path, config: Config) -> None:
    """Refuse to replace another client's reports of the same quarter."""
    try:
        manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
        owner = manifest["config"]["client"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no earlier run, or not one the kit can read: keep the rotation
    if owner != config.client:
        raise ConfigError(
            f"{final} holds the reports of client {owner!r}, not "
            f"{config.client!r}; nothing was replaced. Write this client's "
            "reports elsewhere with --reports (make quarterly REPORTS=...) "
            "or move that folder away first"
        )


def _plan_run(
    config: Config, *, quarter: str | None, staging: Path, options: _Options
) -> _Plan:
    from . import data

    _ensure_demo_data(config)
    table = data.load_table(config)
    quarter = quarter or data.last_complete_quarter(table)
    _check_quarter_has_data(table, quarter)
    table_dir = staging / "_table"
    data.save_table(table, table_dir)

    tasks, rejected = [], []
    for seg in config.segments:
        label = seg.label or seg.name
        try:
            data.select_segment(table, seg)
        except Exception as exc:  # noqa: BLE001 - shown per segment, run goes on
            log.info("segment %s not run: %s", seg.name, exc)
            error = _html.error_message(type(exc).__name__, str(exc), step=seg.name)
            rejected.append(SegmentRun(seg.name, label, "failed", error))
            continue
        task = _SegmentTask(
            config_path=str(Path(config.path).resolve()),
            segment=seg.name,
            label=label,
            quarter=quarter,
            out_dir=str(staging / seg.name),
            table_dir=str(table_dir),
            options=options,
        )
        tasks.append(task)
    return _Plan(
        config, quarter, dict(table.fingerprints), tuple(tasks), tuple(rejected)
    )


def _ensure_demo_data(config: Config) -> None:
    folder = resolve_data_dir(config)
    if not config.demo or (folder.is_dir() and any(folder.iterdir())):
        return
    from .demo import write_demo

    log.info("writing the demo data into %s", folder)
    write_demo(folder)


def _in_config_order(config: Config, segments: list[SegmentRun]) -> list[SegmentRun]:
    order = {s.name: i for i, s in enumerate(config.segments)}
    return sorted(segments, key=lambda s: order.get(s.name, len(order)))


# --- running segments in worker processes ---------------------------------

_progress_queue = None
_stop_event = None


def _init_worker(progress_queue, stop_event, threads: int) -> None:
    global _progress_queue, _stop_event
    _progress_queue = progress_queue
    _stop_event = stop_event

    # Ctrl-C is the runner's to handle: it sets the stop event, and each
    # worker interrupts its kernel and skips the notebooks left.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Kernels inherit this environment: no warnings in reports, and parallel
    # segments do not each start one numeric thread per core.
    os.environ["PYTHONWARNINGS"] = "ignore"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))

    # papermill warns about parameter comments it cannot parse; the values
    # are injected all the same, so that is no news for the user.
    logging.getLogger("papermill").setLevel(logging.ERROR)

    # Load the HTML templates while the first kernel starts and computes.
    threading.Thread(target=_html.warm_up, daemon=True).start()


def _run_tasks(tasks, *, jobs: int, progress) -> list[SegmentRun]:
    if not tasks:
        return []
    total = len(tasks) * len(NOTEBOOKS)
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    stop = ctx.Event()
    workers = min(jobs, len(tasks))
    threads = tasks[0].options.threads
    note = (
        f"quarter {tasks[0].quarter}: {len(tasks)} segment(s), {total} notebooks, "
        f"{workers} at a time"
    )
    log.info(note)
    if progress is not None:
        progress(Progress(0, total, "", "", "started", 0.0, note=note))
    pool = ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(events, stop, threads),
    )
    done_count = [0]
    try:
        futures = {pool.submit(_run_segment, t): t for t in tasks}
        results = _collect(futures, events, done_count, total, progress)
    except BaseException:
        log.warning("stopping: interrupting the running notebooks")
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    _drain(events, done_count, total, progress)
    return results


def _collect(futures, events, done_count, total, progress) -> list[SegmentRun]:
    pending = set(futures)
    results = []
    while pending:
        finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        _drain(events, done_count, total, progress)
        for fut in finished:
            results.append(_result_of(fut, futures[fut]))
    return results


def _drain(events, done_count: list[int], total: int, progress) -> None:
    while True:
        try:
            run = events.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        done_count[0] += 1
        if progress is not None:
            progress(
                Progress(
                    done_count[0],
                    total,
                    run.segment,
                    run.notebook,
                    run.status,
                    run.seconds,
                )
            )


def _result_of(fut, task: _SegmentTask) -> SegmentRun:
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - a lost worker fails one segment
        log.error("worker for segment %s stopped: %r", task.segment, exc)
        error = f"the worker running this segment stopped unexpectedly ({exc!r})"
        return SegmentRun(task.segment, task.label, "failed", error)


def _run_segment(task: _SegmentTask) -> SegmentRun:
    started = time.perf_counter()
    Path(task.out_dir).mkdir(parents=True, exist_ok=True)
    runs = []
    with _SegmentKernel(task.options) as kernel:
        for name in NOTEBOOKS:
            if (runs and runs[-1].status != "ok") or _stopping():
                run = NotebookRun(task.segment, name, "skipped", 0.0)
            else:
                run = _run_notebook(task, name, kernel)
            runs.append(run)
            if _progress_queue is not None:
                _progress_queue.put(run)
    failed = [r for r in runs if r.status == "failed"]
    status = "failed" if failed else "ok"
    error = failed[0].error if failed else None
    seconds = time.perf_counter() - started
    return SegmentRun(task.segment, task.label, status, error, tuple(runs), seconds)


def _stopping() -> bool:
    return _stop_event is not None and _stop_event.is_set()


class _SegmentKernel:
    """One kernel for the four notebooks of a segment, reset between them.

    Starting a kernel and importing the scientific stack takes several
    seconds; paying it once per segment instead of once per notebook is most
    of the start-up time of a run. Between notebooks the user namespace is
    cleared (``%reset -f``), figures closed and matplotlib settings restored,
    so a notebook sees only what it creates itself, as when run alone. With
    ``fresh_kernels`` every notebook gets a new kernel instead.
    """

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.km = None
        self.start_seconds = 0.0
        self.used = 0

    def __enter__(self) -> _SegmentKernel:
        if _stop_event is not None:
            threading.Thread(target=self._interrupt_on_stop, daemon=True).start()
        return self

    def _interrupt_on_stop(self) -> None:
        _stop_event.wait()
        km = self.km
        if km is not None:
            with contextlib.suppress(Exception):
                km.interrupt_kernel()

    def __exit__(self, *exc) -> None:
        if self.km is not None:
            self.km.close_clients()
            with contextlib.suppress(Exception):
                self.km.shutdown_kernel(now=False)
            self.km = None

    def prepare(self) -> dict:
        """Return papermill keyword arguments for the next notebook."""
        if self.options.fresh_kernels:
            return {"kernel_manager_class": _kernel_manager_class()}
        if self.km is None:
            self._start()
            return self._handed_out()
        self.km.close_clients()
        if not self._reset():
            self.km.restart_kernel(now=True)
            self._run_code(_SNAPSHOT_CODE)
        return self._handed_out()

    def _handed_out(self) -> dict:
        self.used += 1
        return {"km": self.km}

    def _start(self) -> None:
        started = time.perf_counter()
        km = _kernel_manager_class()(kernel_name=self.options.kernel_name)
        km.start_kernel(cwd=self.options.cwd)
        self.km = km
        self._run_code(_SNAPSHOT_CODE)
        self.start_seconds = time.perf_counter() - started

    def _reset(self) -> bool:
        try:
            return self._run_code(_RESET_CODE)
        except Exception as exc:  # noqa: BLE001 - fall back to a restart
            log.info("kernel reset failed (%r); restarting it", exc)
            return False

    def _run_code(self, code: str) -> bool:
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            reply = kc.execute_interactive(
                code, store_history=False, timeout=120, output_hook=_ignore
            )
        finally:
            kc.stop_channels()
        return reply["content"]["status"] == "ok"


def _ignore(msg) -> None:
    return None


_SNAPSHOT_CODE = "__import__('icp_lib.runner').runner._snapshot_kernel_state()"
_RESET_CODE = "__import__('icp_lib.runner').runner._reset_kernel_state(get_ipython())"
_kernel_state: dict = {}


def _snapshot_kernel_state() -> None:
    """In a kernel: remember the matplotlib settings a fresh kernel has."""
    import matplotlib.pyplot as plt

    _kernel_state["rc"] = plt.rcParams.copy()


def _reset_kernel_state(shell) -> None:
    """In a kernel: forget the previous notebook, as a fresh kernel would."""
    import matplotlib.pyplot as plt

    shell.run_line_magic("reset", "-f")
    shell.execution_count = 1
    plt.close("all")
    if "rc" in _kernel_state:
        # Restoring the backend or interactive mode detaches the inline
        # backend, and the next notebook's charts would not be shown.
        keep = ("backend", "interactive")
        rc = _kernel_state["rc"]
        plt.rcParams.update({k: v for k, v in rc.items() if k not in keep})
    warnings.resetwarnings()
    warnings.simplefilter("ignore")


def _run_notebook(task: _SegmentTask, name: str, kernel: _SegmentKernel):
    import papermill

    started = time.perf_counter()
    opts = task.options
    dst = Path(task.out_dir) / f"{name}.ipynb"
    params = {
        "config_path": task.config_path,
        "segment": task.segment,
        "quarter": task.quarter,
        "output_dir": task.out_dir,
        "table_dir": task.table_dir,
    }
    first = kernel.used == 0
    error = None
    try:
        papermill.execute_notebook(
            str(Path(opts.notebooks_dir) / f"{name}.ipynb"),
            str(dst),
            parameters=params,
            kernel_name=opts.kernel_name,
            language="python",
            progress_bar=False,
            report_mode=True,
            cwd=opts.cwd,
            execution_timeout=opts.timeout,
            start_timeout=120,
            **kernel.prepare(),
        )
    except papermill.PapermillExecutionError as exc:
        error = _html.error_message(exc.ename, exc.evalue, step=name)
    except Exception as exc:  # noqa: BLE001 - kernel died, timeout, bad notebook
        log.warning("notebook %s of %s stopped: %r", name, task.segment, exc)
        error = _html.error_message(type(exc).__name__, str(exc), step=name)
    seconds = time.perf_counter() - started
    run = _render(task, name, dst, seconds=seconds, error=error)
    if first and run.startup_seconds is not None:
        startup = run.startup_seconds + kernel.start_seconds
        run = dataclasses.replace(run, startup_seconds=startup)
    return run


def _render(task, name, ipynb: Path, *, seconds: float, error) -> NotebookRun:
    if not ipynb.is_file():
        status = "failed"
        return NotebookRun(task.segment, name, status, seconds, error=error)
    started = time.perf_counter()
    title = f"{task.label}: {name.replace('_', ' ')[3:]} ({task.quarter})"
    try:
        _html.render_notebook(ipynb, ipynb.with_suffix(".html"), title=title)
    except Exception as exc:  # noqa: BLE001 - a report that cannot render
        error = error or f"{name}.html could not be written ({exc!r})"
    render_seconds = time.perf_counter() - started
    return NotebookRun(
        task.segment,
        name,
        "failed" if error else "ok",
        seconds + render_seconds,
        startup_seconds=_startup_seconds(ipynb),
        render_seconds=render_seconds,
        error=error,
    )


def _startup_seconds(ipynb: Path) -> float | None:
    """Kernel start plus the parameters and setup cells, from papermill's times."""
    import nbformat

    try:
        nb = nbformat.read(str(ipynb), as_version=4)
        start = datetime.fromisoformat(nb.metadata.papermill.start_time)
        code = [c for c in nb.cells if c.cell_type == "code"]
        setup = [c.metadata.papermill for c in code[:3]]
        end = datetime.fromisoformat(setup[-1].end_time)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, OSError):
        return None
    return (end - start).total_seconds()


def _kernel_manager_class():
    """Return the kernel manager class used for every notebook.

    Kernel processes write only start-up and shutdown chatter to their own
    stdout and stderr (cell output travels over the sockets), so those go to
    the null device instead of the user's terminal. On POSIX the kernel
    listens on Unix sockets in a private folder: no TCP port to race for.
    """
    from jupyter_client.manager import KernelManager
    from traitlets import CaselessStrEnum, default

    class QuietKernelManager(KernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw) -> None:
            kw.setdefault("stdout", subprocess.DEVNULL)
            kw.setdefault("stderr", subprocess.DEVNULL)
            # Kernels running in parallel would share IPython's history
            # database and print clashing session numbers into the reports.
            kernel_cmd = [*kernel_cmd, "--HistoryManager.enabled=False"]
            await super()._async_launch_kernel(kernel_cmd, **kw)

        def client(self, **kwargs):
            # papermill leaves its client connected when the kernel is
            # shared; remember clients so the next notebook can close them.
            kc = super().client(**kwargs)
            self.open_clients = [*getattr(self, "open_clients", []), kc]
            return kc

        def close_clients(self) -> None:
            for kc in getattr(self, "open_clients", []):
                with contextlib.suppress(Exception):
                    kc.stop_channels()
            self.open_clients = []

    if os.name != "posix":
        return QuietKernelManager

    class IpcKernelManager(QuietKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            self._socket_dir = tempfile.mkdtemp(prefix="icp-k-")
            return os.path.join(self._socket_dir, "kernel")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart and getattr(self, "_socket_dir", None):
                shutil.rmtree(self._socket_dir, ignore_errors=True)

    return IpcKernelManager


# --- index, manifest and the final move ------------------------------------


def _segment_links(folder: Path) -> list[dict[str, str]]:
    links = []
    for name in NOTEBOOKS:
        page = folder / f"{name}.html"
        if page.is_file():
            text = name[3:].replace("_", " ").capitalize()
            links.append({"href": f"{folder.name}/{page.name}", "text": text})
    return links


def _index_rows(staging: Path, segments: list[SegmentRun]) -> list[dict]:
    rows = []
    for seg in segments:
        folder = staging / seg.name
        rows.append(
            {
                "name": seg.name,
                "label": seg.label,
                "status": seg.status,
                "error": seg.error,
                "headlines": _html.summarize_segment(folder),
                "links": _segment_links(folder),
            }
        )
    return rows


def _write_outputs(staging: Path, plan: _Plan, segments, *, seconds: float) -> None:
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = _html.render_index(
        client=plan.config.client,
        quarter=plan.quarter,
        created_at=created,
        segments=_index_rows(staging, segments),
    )
    (staging / "index.html").write_text(page, encoding="utf-8")
    manifest = _manifest(plan, segments, seconds=seconds, created=created)
    text = json.dumps(manifest, indent=2, ensure_ascii=False, default=str)
    (staging / "manifest.json").write_text(text + "\n", encoding="utf-8")


def _manifest(plan: _Plan, segments, *, seconds: float, created: str) -> dict:
    runs = [r for s in segments for r in s.notebooks if r.status != "skipped"]
    startup = sum(r.startup_seconds or 0.0 for r in runs)
    busy = sum(r.seconds for r in runs)
    return {
        "created_at": created,
        "quarter": plan.quarter,
        "config_path": str(plan.config.path),
        "config": plan.config.model_dump(mode="json"),
        "data_fingerprints": plan.fingerprints,
        "packages": _package_versions(),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "timings": {
            "total_seconds": round(seconds, 2),
            "notebook_seconds": round(busy, 2),
            "startup_seconds": round(startup, 2),
            "startup_share": round(startup / busy, 3) if busy else None,
        },
        "segments": [_segment_record(s) for s in segments],
    }


def _segment_record(seg: SegmentRun) -> dict:
    record = asdict(seg)
    for run in record["notebooks"]:
        for key in ("seconds", "startup_seconds", "render_seconds"):
            if run[key] is not None:
                run[key] = round(run[key], 2)
        del run["segment"]
    record["seconds"] = round(seg.seconds, 2)
    return record


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _swap_into_place(staging: Path, final: Path) -> tuple[Path, Path | None]:
    previous = None
    if final.exists():
        previous = final.with_name(final.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        final.rename(previous)
    staging.rename(final)
    log.info("reports written to %s", final)
    return final, previous
