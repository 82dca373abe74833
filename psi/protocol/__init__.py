"""PSI protocols as plain party state machines over links (no networking): 2-party and N-party."""
