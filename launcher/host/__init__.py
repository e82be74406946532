"""The host side of the Linux backend: everything that runs in the caller's process."""
