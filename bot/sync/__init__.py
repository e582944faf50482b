"""The sync engine: claims due accounts, syncs each folder, records runs and health."""
