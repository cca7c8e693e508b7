"""The `Server` header: a neutral name instead of the server software's.

gunicorn's is set here; gateway/granian_serve.py sends the same name under granian.
"""

from __future__ import annotations

# What every response names as its server; no product, no version.
SERVER_NAME = "authgate"


def hide_server_software() -> None:
    """Make gunicorn send `Server: authgate` and pass it as the WSGI SERVER_SOFTWARE.

    gunicorn has no setting for it; its responses read the module global
    `gunicorn.http.wsgi.SERVER` (copied from `gunicorn.SERVER` when that module was
    imported), so both are set. Called from the config module, before any worker
    starts, so the arbiter and every worker it forks see it.
    """
    import gunicorn
    import gunicorn.http.wsgi

    gunicorn.SERVER = SERVER_NAME
    gunicorn.SERVER_SOFTWARE = SERVER_NAME
    gunicorn.http.wsgi.SERVER = SERVER_NAME
    gunicorn.http.wsgi.SERVER_SOFTWARE = SERVER_NAME
