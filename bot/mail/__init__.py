"""Pure mail code: parse, thread, quote-trim, compose. No I/O, no store, no Slack."""
