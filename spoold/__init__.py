"""spoold: a job daemon whose queue is a folder."""

__version__ = "0.1.0"
