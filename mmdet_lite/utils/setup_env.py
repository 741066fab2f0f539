"""Register every mmdet_lite module and make ``mmdet_lite`` the default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers a component, optionally setting the default scope.

    Args:
        init_default_scope (bool): Whether to make ``mmdet_lite`` the current default scope,
            so that building a config resolves type names in mmdet_lite's registries first
            (configs set ``default_scope = 'mmdet_lite'`` for the same effect in a Runner).
            A current default scope ``'mmdet'`` already is mmdet_lite's while no real
            mmdetection is installed (:mod:`mmdet_lite.registry`), and is kept.
    """
    import mmdet_lite.datasets  # noqa: F401,F811
    import mmdet_lite.datasets.transforms  # noqa: F401,F811
    import mmdet_lite.engine  # noqa: F401,F811
    import mmdet_lite.evaluation  # noqa: F401,F811
    import mmdet_lite.models  # noqa: F401,F811
    import mmdet_lite.visualization  # noqa: F401,F811

    from mmdet_lite.registry import SCOPE, resolve_scope

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is not None and resolve_scope(current.scope_name) == SCOPE:
        return
    if current is not None:
        warnings.warn(f'The current default scope "{current.scope_name}" is not '
                      '"mmdet_lite"; register_all_modules creates a new default scope '
                      'named "mmdet_lite" and makes it current.')
    # A unique instance name so repeated calls do not collide.
    DefaultScope.get_instance(f'mmdet_lite-{datetime.datetime.now()}', scope_name=SCOPE)
