"""Real mail servers on loopback for tests: a private Dovecot and an aiosmtpd SMTP server."""
