"""The tick: stages, messages and their delivery, and the executors that run it."""
