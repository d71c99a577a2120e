"""Protocol emulators: instruments' wire protocols served over a pty or TCP on simulated cells."""
