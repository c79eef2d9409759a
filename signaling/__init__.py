"""turnkit signaling: a WebRTC matchmaker speaking SIGNALING.md v1 over WebSocket."""
