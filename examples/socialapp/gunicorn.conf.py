"""gunicorn configuration of the reference app: uvicorn workers, settings from the environment.

    gunicorn -c gunicorn.conf.py app.main:app

Every value comes from the app's settings (environment variables or ``.env``): ``HOST`` and
``PORT`` for the address, ``WEB_CONCURRENCY`` for the number of workers, ``LOG_LEVEL``.
The migrations run once in the master process before any worker starts, so workers never race
to migrate, on SQLite as on PostgreSQL.
"""

import logging
import os
import secrets

from app.settings import AppSettings

_settings = AppSettings()

# uvicorn's gunicorn worker lives in the `uvicorn-worker` package (uvicorn.workers is deprecated).
worker_class = "uvicorn_worker.UvicornWorker"
bind = [f"{_settings.host}:{_settings.port}"]
workers = _settings.web_concurrency
loglevel = _settings.log_level
accesslog = "-"
errorlog = "-"
# Slow clients are nginx's problem; a worker stuck longer than this is restarted.
timeout = 60
graceful_timeout = 30
keepalive = 5
# Whose X-Forwarded-For/-Proto to believe: the proxy in front, by address or network
# (comma-separated), never "*". Each recipe sets it (systemd unit, Dockerfile, compose files,
# Procfile); without it, nginx on this host. uvicorn reads X-Forwarded-For only when the peer
# is in this list, and then takes the rightmost entry that is not itself in it (the address the
# outermost trusted proxy saw), so entries a client wrote further left are ignored. "*" would
# make it take the LEFTMOST entry instead: the client's own choice.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No gunicornc control socket (gunicorn 25.1+): two instances would share its default path.
control_socket_disable = True
# Workers must not migrate again: the master did (see on_starting).
raw_env = ["MIGRATE_ON_STARTUP=false"]


def on_starting(server: object) -> None:
    """Runs once in the master, before the workers are forked."""
    log = logging.getLogger("gunicorn.error")
    if "*" in (part.strip() for part in forwarded_allow_ips.split(",")):
        log.warning(
            "socialapp: FORWARDED_ALLOW_IPS=* lets every client choose the address it is"
            " counted under; set it to the address or network of the proxy in front"
        )
    if _settings.secret_key is None and _settings.environment != "production":
        # One ephemeral key for all workers (inherited through fork), so a token issued by
        # one worker verifies in the others. Set SECRET_KEY to keep sessions across restarts.
        os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
        log.warning("socialapp: SECRET_KEY is not set; using an ephemeral key for this run")
    if _settings.migrate_on_startup:
        from app.migrate import describe_database, migrate

        migrate(_settings.database_url)
        log.info("socialapp: migrations applied (%s)", describe_database(_settings))
