"""Commands of the card-service stack: serve, seed, fuse, reconcile, sync."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import NoReturn

import httpx
import typer
from rich.console import Console
from rich.progress import Progress

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes"),
    systems: str = typer.Option("registry,healthcard,socialcard,payment,sms,channel",
                                help="systems this process runs (comma-separated); the "
                                "others are reached at `EHC_<SYSTEM>_URL`"),
) -> None:
    """Run the card network (all systems in one process by default)."""
    import uvicorn

    os.environ["EHC_SYSTEMS"] = systems
    from .app import close_app, open_or_exit
    from .common.settings import get_settings
    from .sdk import listen_problem

    if problem := listen_problem(host, port):  # before the banner says it serves
        _fail(problem)
    # tables, keys and secrets made once, before any worker starts (they would race for
    # them); a store that cannot be opened stops here with one line, not in every worker
    names = [s.strip() for s in systems.split(",") if s.strip()]
    built = open_or_exit(get_settings(), names)
    console.print(serve_banner(get_settings(), names, host, port, workers,
                               built.version), highlight=False, soft_wrap=True)
    close_app(built)  # the workers open their own; this one only made the stores ready
    uvicorn.run("services.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False)


def serve_banner(settings, systems: list[str], host: str, port: int, workers: int,
                 version: str) -> str:
    """What a person starting the server needs: where it answers, where its docs and
    the resident's page are, where the admin token is kept, how to seed it."""
    from .common.db import redacted

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    store = redacted(settings.database_url) if settings.database_url \
        else f"SQLite files in {settings.var_dir}/"
    token = ("EHC_ADMIN_TOKEN (set in this environment)" if settings.admin_token else
             f"'admin_token' in {settings.var_dir / 'dev-secrets.json'} (mode 0600)")
    lines = [f"ehc-twin {version}: {', '.join(systems)} ({workers} worker(s))",
             f"  API        {url}",
             f"  API docs   {url}/docs (Swagger UI) and {url}/redoc, served offline",
             f"  health     {url}/healthz (liveness), {url}/readyz (every store)"]
    if "channel" in systems:
        lines.append(f"  H5 page    {url}/channel/ (the resident's unified entry)")
    lines += [f"  store      {store}",
              f"  admin      token: {token}",
              f"  seed it    ehc seed --url {url} --admin-token <token>   (Ctrl-C stops)"]
    return "\n".join(lines)


@app.command()
def seed(
    residents: int = typer.Option(1000, min=1, help="synthetic residents to register and card"),
    out: Path = typer.Option(Path("var/seed.json"), help="JSON file for credentials and cards"),
    url: str | None = typer.Option(None, help="a running stack; default: in-process"),
    admin_token: str | None = typer.Option(None, envvar="EHC_ADMIN_TOKEN",
                                           help="admin token of the stack at --url"),
    hospitals_per_city: int = typer.Option(1, min=1, max=100),
    pharmacies_per_city: int = typer.Option(1, min=0, max=100,
                                            help="designated retail pharmacies, one till each"),
    seed_value: int = typer.Option(2024, "--seed", help="random seed of the residents"),
) -> None:
    """Create hospitals, retail pharmacies, their terminals, a channel app and carded
    residents; write FILE."""
    from .sdk import SdkError, explain, seed_stack, write_seed_file

    problem = _unwritable(out, probe=True)
    if problem:  # asked before a single resident is seeded
        _fail(f"--out {out}: {problem}")

    def run(stack_url: str, token: str) -> dict:
        try:
            with Progress(console=console) as bar:
                task = bar.add_task("issuing cards", total=residents)
                return seed_stack(stack_url, token, residents,
                                  hospitals_per_city=hospitals_per_city,
                                  pharmacies_per_city=pharmacies_per_city, seed=seed_value,
                                  progress=lambda n: bar.advance(task, n))
        except (SdkError, httpx.HTTPError) as exc:  # nothing written to FILE
            _fail(f"{explain(exc)} (seeding is idempotent: run again)")

    if url:
        if not admin_token:
            raise typer.BadParameter("--admin-token (or EHC_ADMIN_TOKEN) is needed with --url")
        data = run(url, admin_token)
    else:
        from .sdk import start_in_thread

        with start_in_thread(_in_process_settings()) as stack:
            data = run(stack.url, stack.admin_token)
            data["url"] = None
    try:
        write_seed_file(data, out)
    except OSError as exc:  # the disk filled or the folder went meanwhile
        _fail(f"--out {out}: cannot write it ({exc.strerror or exc}); the stack is seeded: "
              "run again to write the file (seeding is idempotent)")
    console.print(f"seeded {len(data['cards'])} cards, {len(data['institutions'])} "
                  f"institutions -> {out}")


def _unwritable(path: Path, probe: bool = False) -> str | None:
    """Why a file could not be written at ``path`` (it is a folder; the nearest folder
    that exists on its way is a file, or not writable), or None; nothing is made. With
    ``probe``, its folder is made and a file tried there (what the command makes anyway)."""
    import os

    if path.is_dir():
        return "a folder, not a file"
    there = path.absolute().parent
    while not there.exists():
        there = there.parent
    if not there.is_dir():
        return f"{there} is a file, not a folder"
    if not os.access(there, os.W_OK | os.X_OK):
        return f"{there} is not writable"
    if probe:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            trial = path.with_name(f".{path.name}.probe")
            trial.touch()
            trial.unlink()
        except OSError as exc:
            return f"cannot write there ({exc.strerror or exc})"
    return None


def _stack(url: str | None, admin_token: str | None):
    """(url, admin token, context) of the stack at URL, or of one started in-process on
    the configured store (``EHC_VAR_DIR`` / ``EHC_DATABASE_URL``)."""
    import contextlib

    if url:
        if not admin_token:
            raise typer.BadParameter("--admin-token (or EHC_ADMIN_TOKEN) is needed with --url")
        return url, admin_token, contextlib.nullcontext()
    from .sdk import start_in_thread

    stack = start_in_thread(_in_process_settings())
    return stack.url, stack.admin_token, stack


def _in_process_settings():
    """The configured store's settings for a stack a command starts in its own process:
    its access lines (one a request, thousands for a seed) kept out of the command's
    output unless ``EHC_LOG_LEVEL`` asks for them."""
    from .common.settings import get_settings

    settings = get_settings()
    if "EHC_LOG_LEVEL" in os.environ:
        return settings
    return settings.model_copy(update={"log_level": "WARNING"})


URL = typer.Option(None, help="a running stack; default: in-process on the configured store")
TOKEN = typer.Option(None, envvar="EHC_ADMIN_TOKEN", help="admin token of the stack at --url")


DAY_OPTION = typer.Option(None, "--date", help="a China Standard Time day, YYYY-MM-DD "
                          "(default: today there)")


def _day(day: str | None) -> str:
    """The --date given, checked, or today in China Standard Time."""
    from datetime import date

    from .common.cst import cst_today

    if day is None:
        return cst_today().isoformat()
    try:
        return date.fromisoformat(day).isoformat()
    except ValueError:
        _fail(f"--date {day!r} is not a day (YYYY-MM-DD)")


def _fail(message: str) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {message}")
    raise typer.Exit(2)


@app.command()
def fuse(
    all_holders: bool = typer.Option(True, "--all/--dry-run", help="--all (the default): "
                                     "open and bind for every issued e-SSC holder without a "
                                     "bound EHC; --dry-run: only say how many there are"),
    page: int = typer.Option(1000, min=1, max=2000, help="holders per signed batch"),
    in_flight: int = typer.Option(2, min=1, max=16, help="signed batches sent at once"),
    url: str | None = URL,
    essc_url: str | None = typer.Option(None, help="the e-SSC system, when it runs apart "
                                        "from --url"),
    admin_token: str | None = TOKEN,
    report: Path = typer.Option(Path("var/fuse-refusals.csv"), help="where each refused "
                                "holder is listed with its reason (card number, reason)"),
) -> None:
    """Auto-open an EHC for every e-SSC holder and bind the two cards (resumable: run it
    again after a crash and it carries on; holders already bound are skipped). A holder
    that cannot be opened (malformed ID number, a name the registry disagrees with, a
    lost card) is refused on its own and listed in REPORT; the run goes on."""
    from .sdk import AdminClient, SdkError, explain, fuse_all, todo

    problem = _unwritable(report) if all_holders else None
    if problem:  # asked before a long run whose refusals it could not list
        _fail(f"--report {report}: {problem}")
    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token, timeout_s=600) as ehc, \
            AdminClient(essc_url or base, token, timeout_s=600) as essc:
        try:
            remaining, _ = todo(essc)
            if not all_holders:
                console.print(f"{remaining} e-SSC holder(s) without a bound EHC; "
                              "'ehc fuse' opens and binds them")
                return
            with Progress(console=console) as bar:
                task = bar.add_task("opening and binding", total=remaining)
                refused: list[dict[str, str]] = []
                totals = fuse_all(ehc, essc, page=page, workers=in_flight,
                                  progress=lambda n: bar.advance(task, n), refusals=refused)
        except (SdkError, httpx.HTTPError) as exc:
            _fail(f"{explain(exc)} (run again to resume)")
    console.print("fusion: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
    if refused:
        _write_refusals(report, refused)
        reasons = Counter(r["reason"] for r in refused)
        console.print(f"[yellow]{len(refused):,} holders refused[/] ("
                      + ", ".join(f"{k} {v:,}" for k, v in reasons.most_common())
                      + f"): listed in {report}")
    if totals["pending"]:
        console.print("[yellow]some bindings are pending[/]: the e-SSC side did not answer; "
                      "`ehc reconcile bindings` completes them")


def _write_refusals(path: Path, rows: list[dict[str, str]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["ssc_card_no", "reason"])
        writer.writeheader()
        writer.writerows(rows)


reconcile = typer.Typer(no_args_is_help=True, help="Compare the systems' records: "
                        "bindings (repaired) and a day's settlements (listed).")
app.add_typer(reconcile, name="reconcile")


@reconcile.command("bindings")
def reconcile_bindings(url: str | None = URL, admin_token: str | None = TOKEN) -> None:
    """Finish or drop pending bindings and make both sides' copies agree; prints what it
    did. Exit 0 when both sides agree afterwards, 1 when something is left."""
    from .sdk import AdminClient, SdkError, explain

    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token, timeout_s=600) as admin:
        try:
            report = admin.reconcile_bindings()
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))
    for line in report["actions"]:
        console.print(" - " + line)
    counts = {k: report[k] for k in ("completed", "dropped", "still_pending", "resent",
                                     "adopted")}
    console.print("bindings: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                  + f", conflicts {len(report['conflicts'])}"
                  + (" (both sides agreed already)" if report["clean"] else ""))
    if report["still_pending"] or report["conflicts"]:
        raise typer.Exit(1)


@reconcile.command("settlements")
def reconcile_settlements(
    day: str | None = DAY_OPTION,
    url: str | None = URL,
    ehc_url: str | None = typer.Option(None, help="the EHC system, when it runs apart"),
    admin_token: str | None = TOKEN,
) -> None:
    """Check a day's settlements: every visit's ledger postings against its state and
    split, the payment gateway's statement against the cash parts, the usage record each
    committed visit leaves on the e-SSC side, and (for bound cards) that it reached the
    EHC side. Exit 0 when clean, 1 with the differences listed."""
    from .sdk import AdminClient, SdkError, explain

    day = _day(day)
    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token, timeout_s=600) as admin, \
            AdminClient(ehc_url or base, token, timeout_s=600) as ehc:
        try:
            report = admin.reconcile_settlements(day)
            ehc.pull_usage("ehc")  # what the e-SSC side holds now, before looking
            wanted = {r["usage_record_id"]: r["settlement_id"]
                      for r in report["shared_usage_records"]}
            found = set(ehc.shared_usage_found(sorted(wanted))) if wanted else set()
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))
    for rec_id in sorted(set(wanted) - found):
        report["differences"].append({"settlement_id": wanted[rec_id],
                                      "kind": "EHC_USAGE_MISSING",
                                      "detail": f"e-SSC usage record {rec_id} not on the "
                                      "EHC side"})
    report["clean"] = not report["differences"]
    totals = report["settled_totals_fen"]
    console.print(f"{report['date']}: {report['settlements']} settlements "
                  f"{report['by_state']}; settled fund {totals.get('fund_fen', 0)} fen, "
                  f"personal accounts {totals.get('account_fen', 0)} fen, cash "
                  f"{totals.get('cash_fen', 0)} fen")
    if report["open"]:
        console.print(f"awaiting confirmation: {', '.join(report['open'])}")
    if report.get("unresolved"):
        console.print(f"[yellow]unresolved (the gateway never answered; ask it, then "
                      f"confirm or refund by hand): {', '.join(report['unresolved'])}[/]")
    for d in report["differences"]:
        console.print(f" - {d['settlement_id']} {d['kind']}: {d['detail']}")
    console.print("clean" if report["clean"]
                  else f"[red]{len(report['differences'])} difference(s)[/]")
    if not report["clean"]:
        raise typer.Exit(1)


db = typer.Typer(no_args_is_help=True, help="The systems' stores.")
app.add_typer(db, name="db")


@db.command("upgrade")
def db_upgrade(
    systems: str = typer.Option("registry,healthcard,socialcard,payment,sms,channel",
                                help="the systems whose stores to upgrade (comma-separated)"),
) -> None:
    """Bring each system's store (EHC_VAR_DIR or EHC_DATABASE_URL) to this version's
    schema: a store made by an earlier release is migrated in place, keeping every row
    ('ehc serve' does the same when it starts)."""
    from alembic.runtime.migration import MigrationContext

    from .app import open_or_exit
    from .common.settings import get_settings

    built = open_or_exit(get_settings(), [s.strip() for s in systems.split(",") if s.strip()])
    for name, system in built.state.systems.items():
        engine = getattr(system, "engine", None)
        if engine is not None:
            with engine.connect() as conn:
                revision = MigrationContext.configure(conn).get_current_revision()
            console.print(f"{name}: " + (f"at {revision}" if revision
                                         else "current (no migration history yet)"))


audit = typer.Typer(no_args_is_help=True, help="Audit chains of the card systems.")
app.add_typer(audit, name="audit")


@audit.command("verify")
def audit_verify(
    day: str | None = DAY_OPTION,
    url: str | None = URL,
    essc_url: str | None = typer.Option(None, help="the e-SSC system, when apart"),
    admin_token: str | None = TOKEN,
) -> None:
    """Walk the day's keyed audit chains (usage records on both card systems, ledger
    postings of settlements) per institution, against the heads each system sealed (its
    own file and the other system's copy), and report every row edited, deleted or
    inserted, a cut-off tail and a rolled-back head. Exit 0 when every chain holds, 1
    otherwise."""
    from .sdk import AdminClient, SdkError, explain

    day = _day(day)
    base, token, ctx = _stack(url, admin_token)
    clean = True
    with ctx, AdminClient(base, token, timeout_s=600) as ehc, \
            AdminClient(essc_url or base, token, timeout_s=600) as essc:
        try:
            reports = {"EHC": ehc.audit(day, "ehc"), "e-SSC": essc.audit(day, "essc")}
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))
    for system, report in reports.items():
        seals = report.get("seals", {})
        console.print(f"{system} seals: {seals.get('file', 0)} in its file, "
                      + ("the other system unreachable" if seals.get("peer") is None
                         else f"{seals['peer']} held by the other system")
                      + (f", [red]{seals['invalid']} with a signature that fails[/]"
                         if seals.get("invalid") else ""))
        for chain, r in report.items():
            if not isinstance(r, dict) or chain == "seals":
                continue
            console.print(f"{system} {chain}: {r['chains']} chains, {r['rows']} rows, "
                          + ("intact" if r["clean"] else f"{len(r['problems'])} problem(s)"))
            for p in r["problems"]:
                console.print(f"   - {p['problem']}: row {p['row']} {p['detail']}")
        clean = clean and report["clean"]
    if not clean:
        raise typer.Exit(1)


@app.command()
def sync(url: str | None = URL, admin_token: str | None = TOKEN) -> None:
    """Pull each side's new usage records of bound cards into the other, and the
    registry's newly registered deaths into both, now (the servers also do it every
    EHC_SYNC_INTERVAL_S)."""
    from .sdk import AdminClient, SdkError, explain

    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token) as admin:
        try:
            to_ehc, to_essc = admin.pull_usage("ehc"), admin.pull_usage("essc")
            dead = {s: admin.pull_deaths(s) for s in ("ehc", "essc")}
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))
    console.print(f"usage records shared: {to_essc} to the e-SSC side, {to_ehc} to the EHC side")
    console.print(f"cards cancelled after registered deaths: {dead['ehc']} EHC, "
                  f"{dead['essc']} e-SSC")


credentials = typer.Typer(no_args_is_help=True, help="Terminals and channel apps: list, "
                          "disable, enable, rotate (with both card systems at once).")
app.add_typer(credentials, name="credentials")
KEY = typer.Argument(..., help="a terminal ID (16 characters) or an app key (app_...)")


def _kind_of(key: str) -> str:
    return "channel-apps" if key.startswith("app_") else "terminals"


@credentials.command("list")
def credentials_list(
    kind: str = typer.Option("terminals", help="terminals or channel-apps"),
    system: str = typer.Option("ehc", help="ehc or essc"),
    url: str | None = URL, admin_token: str | None = TOKEN,
) -> None:
    """Every terminal (or app) one card system knows, with its state; never a secret."""
    from rich.table import Table

    from .sdk import AdminClient, SdkError, explain

    if kind not in ("terminals", "channel-apps") or system not in ("ehc", "essc"):
        _fail("--kind is terminals or channel-apps, --system ehc or essc")
    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token) as admin:
        try:
            rows = admin.credentials(kind, system=system)
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))
    table = Table(title=f"{kind} of {system} ({len(rows)})")
    for column in (rows[0] if rows else {"(none)": ""}):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


def _change(key: str, url: str | None, admin_token: str | None, action) -> str:
    from .sdk import AdminClient, SdkError, explain

    base, token, ctx = _stack(url, admin_token)
    with ctx, AdminClient(base, token) as admin:
        try:
            return action(admin, _kind_of(key))
        except (SdkError, httpx.HTTPError) as exc:
            _fail(explain(exc))


@credentials.command("disable")
def credentials_disable(key: str = KEY, url: str | None = URL,
                        admin_token: str | None = TOKEN) -> None:
    """Refuse this terminal or app on every worker of both card systems within a second."""
    _change(key, url, admin_token, lambda a, kind: a.set_active(kind, key, False))
    console.print(f"{key} disabled")


@credentials.command("enable")
def credentials_enable(key: str = KEY, url: str | None = URL,
                       admin_token: str | None = TOKEN) -> None:
    """Accept a disabled terminal or app again."""
    _change(key, url, admin_token, lambda a, kind: a.set_active(kind, key, True))
    console.print(f"{key} enabled")


@credentials.command("rotate")
def credentials_rotate(key: str = KEY, url: str | None = URL,
                       admin_token: str | None = TOKEN) -> None:
    """A new secret, the same with both card systems; printed once (the old one stops
    working within a second)."""
    secret = _change(key, url, admin_token, lambda a, kind: a.rotate(kind, key))
    console.print(f"{key} new secret (shown once): {secret}")


data = typer.Typer(no_args_is_help=True, help="The data resources layer: gather the "
                   "network's records, check their quality.")
app.add_typer(data, name="data")
STORE = typer.Option(Path("var/data"), "--store", help="the analytics store (a folder, "
                     "owner-only)")


@data.command("collect")
def data_collect(
    store: Path = STORE,
    url: str | None = URL,
    token: str | None = typer.Option(None, envvar="EHC_DATA_TOKEN", help="the data token "
                                     "(or an admin token) of the stack at --url"),
    page_size: int = typer.Option(1000, min=1, max=5000, help="rows per request"),
) -> None:
    """Pull every source (usage records of both card systems, cards, bindings, shared
    records, settlements, ledger postings) after its cursor into the store, pseudonymised
    (EMPI and card IDs only). Interrupted, it resumes where it stopped."""
    import contextlib

    from .data.collect import CollectError, collect
    from .data.store import Store

    ctx: contextlib.AbstractContextManager[object]
    if url:
        if not token:
            raise typer.BadParameter("--token (or EHC_DATA_TOKEN) is needed with --url")
        base, ctx = url, contextlib.nullcontext()
    else:
        from .common.secrets_store import deployment_secret
        from .sdk import start_in_thread

        settings = _in_process_settings()
        token = deployment_secret(settings, "data_token")
        stack = start_in_thread(settings)
        base, ctx = stack.url, stack
    with ctx, Progress(console=console) as bar:
        task = bar.add_task("collecting", total=None)
        try:
            done = collect(base, token, Store(store), page_size=page_size,
                           progress=lambda source, n: bar.update(
                               task, advance=n, description=f"collecting {source}"))
        except CollectError as exc:
            _fail(str(exc))
    for d in done:
        console.print(f"{d.source}: {d.rows} new rows in {d.pages} page(s)" if d.served else
                      f"{d.source}: skipped (its system is not served at this address)")
    console.print(f"store: {store}")


@data.command("check")
def data_check(
    store: Path = STORE,
    late_after_s: int = typer.Option(3600, min=1, help="a record shared later than this "
                                     "after its scan is a late sync"),
    out: Path | None = typer.Option(None, help="write breaches.csv and quality.csv here"),
) -> None:
    """Run the quality rules over the store: completeness, validity, uniqueness,
    timeliness and consistency across systems. Lists each breach with its row, a count per
    rule and a score per day; exit 1 when any rule is breached."""
    from .data.quality import check
    from .data.store import Store

    if not store.is_dir():
        _fail(f"no store at {store}: run 'ehc data collect --store {store}' first")
    if not any(store.iterdir()):  # collected, but the network has no records yet
        console.print(f"{store} holds no records yet: nothing to check")
        return
    breaches, per_day = check(Store(store), late_after_s)
    for _, r in per_day.iterrows():
        console.print(f"{r['day']}: {int(r['rows'])} rows, {int(r['breaches'])} breaches, "
                      f"quality score {r['score']:.4f}")
    for rule, n in breaches.groupby("rule").size().items():
        console.print(f"  [red]{rule}[/]: {n}")
    for _, b in breaches.head(20).iterrows():
        console.print(f"   - {b['day']} {b['source']} {b['key']}: {b['detail']}")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        breaches.to_csv(out / "breaches.csv", index=False)
        per_day.to_csv(out / "quality.csv", index=False)
        console.print(f"wrote breaches.csv and quality.csv to {out}")
    if len(breaches):
        raise typer.Exit(1)
