"""The app's Alembic history, composed with postkit's (see alembic.ini and app/migrate.py)."""
