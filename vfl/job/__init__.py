"""Jobs: the validated job spec, the split agreed by ID, and the runtimes at the active and passive parties."""
