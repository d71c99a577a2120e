"""Reference studies shipped with labctl."""
