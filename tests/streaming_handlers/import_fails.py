"""A handler module whose import fails: the runtime reports an init error."""

raise ImportError("missing dependency on purpose")


def handler(event, context):  # pragma: no cover - never reached
    return event
