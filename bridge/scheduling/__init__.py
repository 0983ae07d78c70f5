"""Scheduling: decisions (planner) and the executors that run jobs."""
