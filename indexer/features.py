"""Feature names and values of `rank_features` fields (docs/search.md, "rank_features").

Elasticsearch refuses dots in the feature names of a `rank_features` field (a `rank_feature`
query names a feature as `<field>.<feature>` and splits at the last dot), while item ids may
contain them. `encode_feature` percent-encodes just '%' and '.', so ordinary ids are their
own feature names and the encoding is reversible.

Lucene's FeatureField keeps only the 9 most significant bits of a feature value: it stores
`Float.floatToIntBits(value) >>> 15` as the term frequency and scores with
`Float.intBitsToFloat(freq << 15)`, i.e. the float32 value with its 15 low mantissa bits
cleared (truncated, not rounded; relative precision 2**-8). `quantize` gives that value.
"""

from __future__ import annotations

import re

import numpy as np

MIN_NORMAL = float(np.finfo(np.float32).tiny)
"""Float.MIN_NORMAL (2**-126): FeatureField refuses smaller values (and non-finite ones)."""

_ENCODED = re.compile(r"%(25|2E)")
_DECODE = {"25": "%", "2E": "."}
_KEPT_BITS = np.uint32(0xFFFF8000)
"""The bits FeatureField keeps: sign, exponent and the top 8 stored mantissa bits."""


def encode_feature(name: str) -> str:
    """The `rank_features` feature name of an item id: '%' -> '%25', '.' -> '%2E'."""
    if "%" in name:
        name = name.replace("%", "%25")
    if "." in name:
        name = name.replace(".", "%2E")
    return name


def decode_feature(encoded: str) -> str:
    """The item id of a feature name made by encode_feature. Raises ValueError for a dot or
    a '%' that is not one of encode_feature's escapes (no encode_feature output has them)."""
    if "." in encoded:
        raise ValueError(f"not an encoded feature name (it has a dot): {encoded!r}")
    if "%" not in encoded:
        return encoded
    if encoded.count("%") != len(_ENCODED.findall(encoded)):
        raise ValueError(f"not an encoded feature name: {encoded!r}")
    return _ENCODED.sub(lambda m: _DECODE[m.group(1)], encoded)


def quantize(values: np.ndarray) -> np.ndarray:
    """The float32 values Lucene's FeatureField scores with: each value converted to
    float32 (as Elasticsearch parses it), then its 15 low mantissa bits cleared.

    Meant for valid feature values (finite, >= MIN_NORMAL); for those the result is never
    above Float.MAX_VALUE's own truncation, so Lucene's MAX_FREQ clamp never applies."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    return (v.view(np.uint32) & _KEPT_BITS).view(np.float32)


def check_feature_value(value: object) -> str | None:
    """Why a feature value would be refused by Elasticsearch / Lucene, or None.

    Elasticsearch parses the value as a float (a JSON number; its `null` is skipped, like a
    missing feature) and Lucene's FeatureField then requires a finite float >= MIN_NORMAL;
    the messages are FeatureField's."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ("[rank_features] fields take hashes that map a feature to a strictly positive "
                f"float, but got {value!r}")
    try:
        with np.errstate(over="ignore"):
            f = np.float32(value)
    except OverflowError:  # an int beyond the float64 range
        f = np.float32(np.inf)
    if not np.isfinite(f):
        return f"featureValue must be finite, got: {value!r}"
    if f < MIN_NORMAL:
        return (f"featureValue must be a positive normal float, got: {value!r}, which is less than "
                f"the minimum positive normal float: {MIN_NORMAL!r}")
    return None


FINITE_BELOW = 2.0**128 - 2.0**103
"""Numbers below this round to a finite float32 (it is the midpoint between Float.MAX_VALUE
and 2**128, which rounds to even: infinity)."""
NORMAL_FROM = 2.0**-126 - 2.0**-150
"""Numbers from this one up round to a float32 >= MIN_NORMAL (the midpoint below it rounds
to even: MIN_NORMAL)."""
_NUMBERS = {float, int}


def check_features(value: object) -> str | None:
    """Why a document's value of a `rank_features` field would be refused, or None: it must
    be an object of feature name (no dots) -> feature value (check_feature_value; `null` is
    skipped, as Elasticsearch does). Checks a whole object at C speed when it is valid."""
    if not isinstance(value, dict):
        return f"[rank_features] fields must be json objects, got {value!r}"
    if not set(map(type, value)) <= {str}:
        return "feature names must be strings"
    if "." in "".join(value):
        feature = next(k for k in value if "." in k)
        return f"[rank_features] fields do not support dots in feature names but found [{feature}]"
    if not value:
        return None
    values = value.values()
    if set(map(type, values)) <= _NUMBERS:
        total = sum(values)  # NaN when any value is NaN
        if total == total and min(values) >= NORMAL_FROM and max(values) < FINITE_BELOW:
            return None
    for feature, v in value.items():
        if v is not None and (problem := check_feature_value(v)) is not None:
            return f"[{feature}] {problem}"
    return None
