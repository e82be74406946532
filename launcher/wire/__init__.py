"""What the host and the launcher process share: the launch body, envelope, states, identity."""
