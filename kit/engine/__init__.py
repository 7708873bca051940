"""Running validated behaviours: applicability, steps on the adapter, verdicts."""
