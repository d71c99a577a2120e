"""Application layer: building channels and running protocols, campaigns, exports, stored results."""
