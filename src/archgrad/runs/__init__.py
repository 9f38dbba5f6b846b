"""Run directories: claiming, locking, atomic writes, checkpoints with digests and exact resume
(``rundir``), and the schema of every file a run directory holds, checked on reading
(``schemas``)."""
