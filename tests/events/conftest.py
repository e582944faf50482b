"""The compose end-to-end fixture (a Dovecot account with one announced email) for events."""

from tests.compose.test_end_to_end import box  # noqa: F401
