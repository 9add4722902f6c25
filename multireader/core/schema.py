"""The label schema of a dataset: class names, ordinal scale, score range, mask values.

Declared once per dataset and checked on every import, so a typo in one reader's
table ("maligant") is reported by line instead of silently becoming a new class.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from multireader.core.fields import INFO_KEY, reader_fields
from multireader.errors import MultireaderError

_SCHEMA_KEY = "label_schema"


class SchemaError(MultireaderError):
    """A schema that cannot be declared, or a value that breaks it."""


def get_label_schema(dataset) -> dict | None:
    """The declared schema, or None when none was declared."""
    schema = (dataset.info or {}).get(INFO_KEY, {}).get(_SCHEMA_KEY)
    if not schema:
        return None
    out = dict(schema)
    if out.get("mask_targets"):
        out["mask_targets"] = {int(k): v for k, v in out["mask_targets"].items()}
    return out


def declare_label_schema(
    dataset,
    classes: Iterable[str],
    *,
    ordered: bool = False,
    score_range: Sequence[float] | None = None,
    mask_targets: dict | None = None,
    overwrite: bool = False,
) -> dict:
    """Declare the classes (in order when ``ordered``), score range and mask values.

    Redeclaring a different schema once reader labels exist raises :class:`SchemaError`
    unless ``overwrite=True``: labels validated against one schema must not silently
    fall outside another.
    """
    classes = [str(c).strip() for c in (classes or [])]
    if not classes or any(not c for c in classes):
        raise SchemaError("classes: give at least one non-empty class name")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise SchemaError(f"classes: duplicated names {dupes}")
    if score_range is not None:
        if len(score_range) != 2:
            raise SchemaError("score_range: expected [lowest, highest]")
        lo, hi = (float(v) for v in score_range)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise SchemaError(f"score_range: lowest ({lo}) must be below highest ({hi})")
        score_range = [lo, hi]
    if mask_targets:
        try:
            mask_targets = {int(k): str(v) for k, v in mask_targets.items()}
        except (TypeError, ValueError) as err:
            raise SchemaError(f"mask_targets: keys must be integers ({err})") from err
        if any(k <= 0 or k > 255 for k in mask_targets):
            raise SchemaError("mask_targets: values must be 1..255 (0 is background)")
    schema = {
        "classes": classes,
        "ordered": bool(ordered),
        "score_range": score_range,
        "mask_targets": {str(k): v for k, v in (mask_targets or {}).items()},
    }
    current = (dataset.info or {}).get(INFO_KEY, {}).get(_SCHEMA_KEY)
    if current and current != schema and not overwrite:
        labelled = sorted(reader_fields(dataset))
        if labelled:
            changes = "; ".join(
                f"{k}: {current.get(k)!r} -> {schema[k]!r}"
                for k in schema
                if current.get(k) != schema[k]
            )
            raise SchemaError(
                f"this dataset already has reader labels ({', '.join(labelled[:5])}"
                f"{', ...' if len(labelled) > 5 else ''}) validated against another schema "
                f"({changes}); pass overwrite=True to replace it"
            )
    info = dict(dataset.info or {})
    info[INFO_KEY] = {**info.get(INFO_KEY, {}), _SCHEMA_KEY: schema}
    dataset.info = info
    dataset.default_classes = classes
    # replaced, not merged: a redeclared schema without masks leaves no stale targets
    dataset.default_mask_targets = mask_targets or {}
    dataset.save()
    return get_label_schema(dataset)


def ordinal_rank(schema: dict | None, label: str) -> int | None:
    """0-based rank of ``label`` on an ordered scale (benign = 0 < ... ), else None.

    Weighted agreement statistics need ranks, not names; an unordered schema has none.
    """
    if not schema or not schema.get("ordered") or label not in schema["classes"]:
        return None
    return schema["classes"].index(label)


def check_label(schema: dict | None, label: str) -> str | None:
    """Why ``label`` breaks the schema, or None (no schema declared: any label)."""
    if schema and label not in schema["classes"]:
        return f"label {label!r} is not in the declared classes {schema['classes']}"
    return None


def check_score(schema: dict | None, score: float | None) -> str | None:
    """Why ``score`` breaks the declared score range, or None (no range: any score)."""
    if score is None or not schema or not schema.get("score_range"):
        return None
    lo, hi = schema["score_range"]
    if not lo <= score <= hi:
        return f"score {score:g} is outside the declared range [{lo:g}, {hi:g}]"
    return None


def check_mask_values(schema: dict | None, values) -> str | None:
    """Why a mask's values break the declared mask targets (0 is background), or None."""
    targets = (schema or {}).get("mask_targets")
    if not targets:
        return None
    unknown = sorted(int(v) for v in values if int(v) != 0 and int(v) not in targets)
    if unknown:
        return f"mask values {unknown} are not in the declared mask targets {sorted(targets)}"
    return None
