"""The front of bvisor: the Python API and the commands, wiring the other packages together."""
