"""turnkit: render, deploy, credential and probe WebRTC TURN relays."""

__version__ = "0.1.0"
