#!/usr/bin/env python3
"""Start web, worker and beat from the Procfile with honcho (the last step of `make run`).

honcho's own .env loading lets .env override the shell, the opposite of
ishchat/settings.py. So this loads .env the settings' way (the shell wins),
prints where to go, and starts honcho with no env file of its own: every
process then sees the same values `manage.py migrate` saw.

Run with the virtualenv's Python; extra arguments go to `honcho start`
(e.g. `web` to start only the web server).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from ishchat.env import env_bool, env_int, env_str, load_dotenv  # noqa: E402


def _base_url() -> str:
    host = env_str("BACKEND_HOST", "127.0.0.1")
    port = env_int("BACKEND_PORT", 8000, minimum=1, maximum=65535)
    if host in {"", "0.0.0.0", "::"}:  # noqa: S104 - only choosing what to display
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _has_dashboard() -> bool:
    import django
    from django.urls import Resolver404, resolve

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ishchat.settings")
    django.setup()
    try:
        resolve("/")
    except Resolver404:
        return False
    return True


def banner() -> str:
    base = _base_url()
    env_file = PROJECT_ROOT / ".env"
    username = env_str("DJANGO_SUPERUSER_USERNAME", "admin") or "admin"
    origin = (
        "from DJANGO_SUPERUSER_PASSWORD"
        if env_str("DJANGO_SUPERUSER_PASSWORD")
        else "printed above by ensure_admin on the first run only"
    )
    rows = []
    if _has_dashboard():
        rows.append(("Dashboard", f"{base}/"))
    rows += [
        ("Admin", f"{base}/admin/   (user {username!r}, password {origin})"),
        ("API docs", f"{base}/docs   (OpenAPI schema: {base}/api/schema/)"),
        ("Health", f"{base}/health"),
        ("API key", f"BACKEND_API_KEY in {env_file}   (header X-API-Key)"),
    ]
    rule = "-" * 72
    lines = [rule, "  ISH Chat Instance Manager: starting web, worker and beat (Ctrl-C stops all)"]
    lines += [f"  {label + ':':<11} {value}" for label, value in rows]
    lines.append(rule)
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if env_bool("INSTANCE_MANAGER_DOTENV", True):
        load_dotenv(PROJECT_ROOT / ".env")
    venv_bin = str(Path(sys.executable).parent)
    os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    print(banner(), flush=True)
    honcho = os.path.join(venv_bin, "honcho")
    command = [honcho, "start", "--procfile", "Procfile", "--app-root", str(PROJECT_ROOT), "--env", os.devnull]
    os.chdir(PROJECT_ROOT)
    os.execv(honcho, [*command, *argv])  # noqa: S606 - fixed program, no shell


if __name__ == "__main__":
    main(sys.argv[1:])
