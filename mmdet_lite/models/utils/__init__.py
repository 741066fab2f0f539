"""Small helpers shared by heads and detectors."""
