"""Lightning callbacks that write a run's reports and artifacts (the module only computes and
logs scalars)."""
