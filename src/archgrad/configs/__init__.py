"""Shipped configuration files (``archgrad search --config NAME``): settings for a job, in the
protocols' TOML format, that are not a paper's protocol (``quickstart``: the README's job)."""
