"""Many runs at once: sweeps as one resumable unit and the papers' protocols run as sweeps
(``sweep``), their reports (``report``) and figures (``plot``)."""
