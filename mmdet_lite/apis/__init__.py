"""High-level APIs: inference and the command-line tools' shared pieces."""
