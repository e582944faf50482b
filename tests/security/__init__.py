"""Security review fixes (docs/security.md names each test here)."""
