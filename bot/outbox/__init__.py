"""The outbox dispatcher and the handlers for each kind of effect (see dispatch.py)."""
