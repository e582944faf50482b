"""The end-to-end fixture (a Dovecot account with one announced email), shared by this folder."""

from tests.compose.test_end_to_end import box  # noqa: F401
