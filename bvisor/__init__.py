"""bvisor: run a Linux process inside a boundary it can prove it enforced."""

__version__ = "0.1.0"
