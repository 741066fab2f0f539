"""Make a ``DataLoader`` with persistent workers pick up a changed dataset pipeline.

Persistent workers hold their own copy of the dataset, taken when they started, so a
pipeline changed in the main process would never reach them. The hooks that change the
pipeline between epochs (:class:`PipelineSwitchHook`, :class:`YOLOXModeSwitchHook`) use
these two steps, as mmdetection does: drop the loader's iterator (and with it the
workers) so that the next epoch starts new ones, then restore the loader's "initialized"
flag, which torch's ``DataLoader.__setattr__`` checks, one epoch later.
"""


def drop_persistent_workers(train_loader) -> bool:
    """Stop reusing ``train_loader``'s persistent workers, if it has any.

    Args:
        train_loader: The training ``DataLoader`` (anything else is left alone).

    Returns:
        bool: True when the workers were dropped; then call :func:`restore_initialized`
        before a later epoch.
    """
    if getattr(train_loader, 'persistent_workers', False) is not True:
        return False
    # DataLoader forbids setting some attributes once initialized; clearing the flag
    # lets the iterator be replaced (torch's name-mangled private attribute).
    train_loader._DataLoader__initialized = False
    train_loader._iterator = None
    return True


def restore_initialized(train_loader) -> None:
    """Set ``train_loader``'s "initialized" flag again after :func:`drop_persistent_workers`."""
    train_loader._DataLoader__initialized = True
