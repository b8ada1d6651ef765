"""postkit's test suite: ``support/`` holds the helpers, one folder per area holds the tests.

unit/         the Python API without HTTP: settings, the data layer, plugin discovery
api/          the HTTP API through httpx against the ASGI app, on SQLite and PostgreSQL
migrations/   the bundled Alembic history, a host's composed history (hostapp/), the CLI
reliability/  real servers under hostile input, outages, races, PgBouncer, query plans
docs/         the documentation's samples, the built site, the README
deploy/       the reference app, its deployment recipes and the CI workflows
"""
