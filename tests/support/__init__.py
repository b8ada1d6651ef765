"""The one copy of each test helper. Import the module you need, e.g.
``from tests.support.servers import serve``; nothing here runs at import time.

paths        where the repository, the docs' samples and the reference app are
ports        a free TCP port on loopback
servers      real server processes (uvicorn, gunicorn, mkdocs, ...) started and always stopped
databases    test databases: PostgreSQL server helpers, a migrated database, SQL probes
api          the HTTP API from a test: a client bound to a kit, accounts and posts
examples     importing a Python file by path (docs/examples, hostapp)
node         node and npm for the tests that need them
tcp_proxy    a TCP proxy that cuts the link to the database on demand
reliability_app   the app real-process tests serve (configured by ``POSTKIT_*`` variables)
"""
