"""Commands of the card-service stack: serve, seed."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
    workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes"),
    systems: str = typer.Option("registry,healthcard", help="systems this process runs"),
) -> None:
    """Run the card network (all systems in one process by default)."""
    import uvicorn

    os.environ["EHC_SYSTEMS"] = systems
    uvicorn.run("services.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning", access_log=False)


@app.command()
def seed(
    residents: int = typer.Option(1000, min=1, help="synthetic residents to register and card"),
    out: Path = typer.Option(Path("var/seed.json"), help="JSON file for credentials and cards"),
    url: str | None = typer.Option(None, help="a running stack; default: in-process"),
    admin_token: str | None = typer.Option(None, envvar="EHC_ADMIN_TOKEN",
                                           help="admin token of the stack at --url"),
    hospitals_per_city: int = typer.Option(1, min=1, max=100),
    seed_value: int = typer.Option(2024, "--seed", help="random seed of the residents"),
) -> None:
    """Create institutions, terminals, a channel app and carded residents; write FILE."""
    from .common.settings import get_settings
    from .seeding import seed_stack, write_seed_file

    def run(stack_url: str, token: str) -> dict:
        with Progress(console=console) as bar:
            task = bar.add_task("issuing cards", total=residents)
            return seed_stack(stack_url, token, residents, hospitals_per_city=hospitals_per_city,
                              seed=seed_value, progress=lambda n: bar.advance(task, n))

    if url:
        if not admin_token:
            raise typer.BadParameter("--admin-token (or EHC_ADMIN_TOKEN) is needed with --url")
        data = run(url, admin_token)
    else:
        from .serve import start_in_thread

        with start_in_thread(get_settings()) as stack:
            data = run(stack.url, stack.admin_token)
            data["url"] = None
    write_seed_file(data, out)
    console.print(f"seeded {len(data['cards'])} cards, {len(data['institutions'])} "
                  f"institutions -> {out}")
