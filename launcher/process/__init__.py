"""The launcher process: verify a launch body, confine a child, exec it, report."""
