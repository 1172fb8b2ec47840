"""The ``icp`` command: quarterly runs, scoring, SQL and demo data.

Every subcommand has ``--help``. Errors on bad input print one message on
stderr and exit with status 2; a quarterly run in which some segment failed
exits with status 1 and names the segments. ``--debug`` shows the traceback
as well.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

from .errors import IcpError

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_FAILED_SEGMENTS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
DEFAULT_CONFIG = "params/demo.yaml"


def _common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors"
    )
    parent.add_argument(
        "-v", "--verbose", action="store_true", help="log what the kit is doing"
    )
    return parent


def _add_quarterly(sub, common) -> None:
    p = sub.add_parser(
        "quarterly",
        parents=[common],
        help="run the four notebooks for every segment and write reports",
        description=(
            "Run the data audit, model fit, grade calibration and quarterly "
            "review for every segment of a client config; write HTML reports, "
            "results and manifest.json into REPORTS/<QUARTER>/."
        ),
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help="client config (YAML)")
    p.add_argument(
        "--quarter",
        default="",
        help="review quarter such as 2026Q3 (default: last complete quarter)",
    )
    p.add_argument("--reports", default="reports", help="reports folder")
    p.add_argument("--notebooks", default=None, help="folder of the four notebooks")
    p.add_argument(
        "--jobs", type=int, default=None, help="segments run at once (default: cores)"
    )
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one cell may run (default 1800; bounds the wait when a "
        "kernel dies)",
    )
    p.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="a new kernel per notebook instead of one per segment (slower)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_quarterly)


def _add_score(sub, common) -> None:
    p = sub.add_parser(
        "score",
        parents=[common],
        help="apply a saved model to new records",
        description=(
            "Score the records of a file (CSV, Excel or Parquet) with a saved "
            "model.json and write record_id, score, grade and reasons to CSV."
        ),
    )
    p.add_argument("--model", required=True, help="model.json of a quarterly run")
    p.add_argument("--input", required=True, help="records to score")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument(
        "--config",
        default=None,
        help="client config, to accept the client's own column names",
    )
    p.add_argument(
        "--top-reasons", type=int, default=3, help="reasons listed per record"
    )
    p.add_argument(
        "--allow-undeployable",
        action="store_true",
        help="score even with a model marked not usable (for analysis only)",
    )
    p.set_defaults(handler=_score)


def _add_sql(sub, common) -> None:
    p = sub.add_parser(
        "sql",
        parents=[common],
        help="print a saved model as a SQL expression for a warehouse",
        description="Print the score and grade of a saved model as SQL.",
    )
    p.add_argument("--model", required=True, help="model.json of a quarterly run")
    p.add_argument(
        "--dialect",
        required=True,
        help="SQL dialect, e.g. duckdb or postgres (an unknown one lists them all)",
    )
    p.add_argument("--table", default="source_table", help="table to score")
    p.add_argument("--id-column", default="record_id", help="record id column")
    p.add_argument(
        "--config",
        default=None,
        help="client config: read each model field from the client's column "
        "name that the config maps it to",
    )
    p.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read model field FIELD from column COLUMN (repeatable; wins "
        "over --config)",
    )
    p.add_argument(
        "--allow-undeployable",
        action="store_true",
        help="print SQL even for a model marked not for deployment",
    )
    p.add_argument("--output", default=None, help="file to write (default: stdout)")
    p.set_defaults(handler=_sql)


def _add_demo(sub, common) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="write the demo data set",
        description="Write the built-in demo CRM export (CSV files) into a folder.",
    )
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--seed", type=int, default=7, help="random seed")
    p.add_argument(
        "--accounts", type=int, default=None, help="number of accounts to generate"
    )
    p.set_defaults(handler=_demo)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``icp`` argument parser."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="icp",
        description="ICP Kit: find, score and review an Ideal Customer Profile.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_quarterly, _add_score, _add_sql, _add_demo):
        add(sub, common)
    return parser


def _print_progress(event) -> None:
    print(event.to_text(), file=sys.stderr, flush=True)


def _quarterly(args: argparse.Namespace) -> int:
    from .runner import run_quarterly

    run = run_quarterly(
        args.config,
        quarter=args.quarter or None,
        reports_dir=args.reports,
        notebooks_dir=args.notebooks,
        jobs=args.jobs,
        kernel_name=args.kernel,
        timeout=args.timeout,
        fresh_kernels=args.fresh_kernels,
        progress=None if args.quiet else _print_progress,
    )
    index = run.report_dir / "index.html"
    if run.failed:
        print(f"reports written to {index}", file=sys.stderr)
        for seg in run.segments:
            if seg.status != "ok":
                print(f"segment {seg.name} failed: {seg.error}", file=sys.stderr)
        names = ", ".join(run.failed)
        print(f"error: {len(run.failed)} segment(s) failed: {names}", file=sys.stderr)
        return EXIT_FAILED_SEGMENTS
    print(f"reports written to {index} in {run.seconds:.0f} s", file=sys.stderr)
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    from .config import load_config
    from .model import score_file

    _refuse_overwrite(args.output, model=args.model, input=args.input)
    config = load_config(args.config) if args.config else None
    score_file(
        args.model,
        args.input,
        args.output,
        config=config,
        top_reasons=args.top_reasons,
        allow_undeployable=args.allow_undeployable,
    )
    print(f"scores written to {args.output}", file=sys.stderr)
    return EXIT_OK


def _refuse_overwrite(output: str, **inputs: str) -> None:
    """Never let an output path replace one of the user's input files."""
    from .errors import ConfigError

    out = Path(output).resolve()
    for name, path in inputs.items():
        if Path(path).resolve() == out:
            raise ConfigError(
                f"--output {output} is the same file as --{name}; it would be "
                "overwritten. Choose another output file"
            )


def _sql_columns(args: argparse.Namespace, fields: list[str]) -> dict[str, str]:
    """Client column of each model field, from --config then --column."""
    from .config import load_config
    from .errors import ConfigError

    columns: dict[str, str] = {}
    if args.config:
        config = load_config(args.config)
        for source in config.sources.values():
            columns |= {k: v for k, v in source.columns.items() if k in fields}
    for item in args.column:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ConfigError(
                f"--column takes FIELD=COLUMN, for example industry=Industry__c; "
                f"found {item!r}"
            )
        if field.strip() not in fields:
            raise ConfigError(
                f"--column names field {field.strip()!r}, which the model does "
                f"not use; its fields are: {', '.join(fields) or 'none'}"
            )
        columns[field.strip()] = column.strip()
    return columns


def _sql(args: argparse.Namespace) -> int:
    from .export import to_sql
    from .model import ScoreCard

    if args.output:
        _refuse_overwrite(args.output, model=args.model)
    card = ScoreCard.read(args.model)
    text = to_sql(
        card,
        dialect=args.dialect,
        table=args.table,
        id_column=args.id_column,
        columns=_sql_columns(args, [f.name for f in card.fields]),
        allow_undeployable=args.allow_undeployable,
    )
    if args.output:
        from ._card import write_text_atomic

        write_text_atomic(Path(args.output), text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from .demo import write_demo

    options = {"seed": args.seed}
    if args.accounts is not None:
        options["n_accounts"] = args.accounts
    write_demo(args.out, **options)
    print(f"demo data written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def _configure_output(args: argparse.Namespace) -> None:
    level = logging.INFO if args.verbose or args.debug else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    if not args.debug:
        warnings.showwarning = _show_warning


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IcpError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename}; check the path"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    return (
        f"unexpected error ({type(exc).__name__}: {exc}); "
        "run again with --debug to see where it happened"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``icp`` command and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 when some segment of a quarterly run failed, 2 on an
        error, 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    _configure_output(args)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted; earlier reports are left as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the user sees one message
        if args.debug:
            traceback.print_exc()
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
