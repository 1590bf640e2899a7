"""Workflows: the md command and the LLZO study, composed from the engine's objects, with the
run utilities they share (``runs``) and the run-directory guards (``hayabusa.rundir``)."""
