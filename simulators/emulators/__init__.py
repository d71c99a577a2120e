"""Emulators: instruments served over their own protocol (pty, TCP) on the simulator's cell models."""
