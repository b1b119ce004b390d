"""Leave-one-subject-out evaluation of MFVAN, its ablations and the baselines; reports."""
