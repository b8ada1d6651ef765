"""The notes app's tests: postkit.testing builds the databases, the app and its clients."""

import pytest
from notesapp.app import create_app

pytest_plugins = ["postkit.testing"]


@pytest.fixture
def postkit_app_factory():
    return create_app  # called with postkit_settings: the test's database, fast bcrypt
