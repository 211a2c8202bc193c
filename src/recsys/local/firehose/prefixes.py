"""Firehose's S3 key names: custom-prefix expressions and object names."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from recsys.core.errors import PipelineError
from recsys.local.firehose.config import DeliveryConfig

_JAVA_DATETIME = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]
_EXPRESSION = re.compile(r"!\{([a-z]+):([^}]*)\}")


def _java_format(pattern: str, moment: datetime) -> str:
    out = pattern
    for java, strf in _JAVA_DATETIME:
        out = out.replace(java, moment.strftime(strf))
    return out


def expand_prefix(prefix: str, moment: datetime, error_output_type: str | None = None) -> str:
    """Firehose's custom-prefix expressions: ``!{timestamp:…}``, ``!{firehose:error-output-type}``,
    ``!{firehose:random-string}``; a prefix without a timestamp gets the default ``YYYY/MM/dd/HH/``."""

    def replace(match: re.Match) -> str:
        namespace, value = match.groups()
        if namespace == "timestamp":
            return _java_format(value, moment)
        if namespace == "firehose" and value == "error-output-type":
            return error_output_type or ""
        if namespace == "firehose" and value == "random-string":
            return uuid.uuid4().hex[:11]
        raise PipelineError(f"unsupported prefix expression {match.group(0)!r}")

    expanded = _EXPRESSION.sub(replace, prefix)
    if "!{timestamp:" not in prefix:
        if error_output_type and "!{firehose:error-output-type}" not in prefix:
            expanded += f"{error_output_type}/"
        expanded += moment.strftime("%Y/%m/%d/%H/")
    return expanded


def object_key(config: DeliveryConfig, moment: datetime, error_output_type: str | None = None) -> str:
    """``<prefix><DeliveryStreamName>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>``, as Firehose names objects."""
    prefix = expand_prefix(config.error_prefix if error_output_type else config.prefix, moment, error_output_type)
    return f"{prefix}{config.name}-{config.version_id}-{moment:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
