"""Errors shared by more than one part of the library."""


class CheckpointError(ValueError, FileNotFoundError):
    """A checkpoint (ours, LLaVA-Video or a generative model's) is missing, unreadable or does not match the
    configuration; the message names the file and the fix. Both a ValueError and a FileNotFoundError."""
