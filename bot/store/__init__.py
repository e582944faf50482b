"""Persistence: SQLAlchemy models (`models`), engine/sessions (`db`), migrations (`migrate`) and
query modules. Knows neither Slack nor mailboxes."""
