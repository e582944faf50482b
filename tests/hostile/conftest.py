"""The sync tests' Dovecot environment, for the poison mail that goes through a real sync."""

from tests.sync.conftest import env  # noqa: F401 (a fixture)
