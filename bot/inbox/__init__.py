"""The inbox in Slack: announcing conversations as threads, and what people do to them."""
