"""A small host app with an Alembic history of its own that predates postkit."""
