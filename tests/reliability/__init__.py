"""Reliability suites: faults, fuzzing, hostile files and requests, load, soak."""
