"""Prefect flows: sequence the DVC stages as tasks; the logic lives in steps/ and qslaw/."""
