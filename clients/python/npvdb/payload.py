"""Payloads and filters: plain Python values <-> the npvdb.v1 messages.

Everything here is checked before a request is built, so a bad payload or a
malformed filter raises in the client with a path naming the culprit
("payloads[3]['tags'][1]: ...", "filter.must[0]: ...") and nothing is sent.

Payload values: str, int (int64), float (finite), bool, and lists (or
tuples) of str; numpy scalars of those kinds are accepted. bool is its own
type here, never an int. Wrong types raise TypeError, wrong values (an
empty field name, a NaN, an int past int64) ValueError; both are
npvdb.InvalidArgument too.

Filters are dicts in Qdrant's JSON shape:
    {"must": [cond, ...], "should": [cond, ...], "must_not": [cond, ...]}
with conditions
    {"key": "tenant", "match": {"value": 42}}          str / int / bool
    {"key": "tag", "match": {"any": ["spam", "old"]}}  all str or all int
    {"key": "price", "range": {"gte": 10, "lt": 20}}   gt, gte, lt, lte
    {"has_field": "lang"}
    {"must": [...], "should": [...], "must_not": [...]}   (nested filter)
A range giving both gt and gte (or lt and lte) keeps the tighter bound:
{"gt": 5, "gte": 5} is gt 5, {"gt": 3, "gte": 5} is gte 5.
"""
import math

import numpy as np

from .errors import InvalidArgument

from .v1 import npvdb_pb2 as pb

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
# The contract's limits (npvdb.proto), checked here for a precise message.
MAX_FIELDS = 64
MAX_FIELD_NAME_BYTES = 255
MAX_STRING_BYTES = 65535
MAX_LIST_STRINGS = 1024
MAX_MATCH_ANY = 1024

_CLAUSES = ("must", "should", "must_not")


class PayloadTypeError(InvalidArgument, TypeError):
    """A payload value or filter operand of a type npvdb does not store."""


def _type_error(path, msg):
    return PayloadTypeError("{}: {}".format(path, msg))


def _value_error(path, msg):
    return InvalidArgument("{}: {}".format(path, msg))


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not _is_bool(v)


def _is_real(v):
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not _is_bool(v))


def _check_str(path, s, limit):
    n = len(s.encode("utf-8", "surrogatepass"))
    if n > limit:
        raise _value_error(path, "{} bytes, at most {}".format(n, limit))
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _value_error(path, "not valid UTF-8: {}".format(e)) from None


def _int64(path, v):
    v = int(v)
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise _value_error(path, "{} does not fit int64".format(v))
    return v


# -- payloads ----------------------------------------------------------------
def _value_pb(path, v, out):
    """Fills the pb.Value `out` from the Python value v."""
    if isinstance(v, (str, np.str_)):
        _check_str(path, str(v), MAX_STRING_BYTES)
        out.string_value = str(v)
    elif _is_bool(v):
        out.bool_value = bool(v)
    elif _is_int(v):
        out.int_value = _int64(path, v)
    elif isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            raise _value_error(path, "{} is not finite".format(float(v)))
        out.double_value = float(v)
    elif isinstance(v, (list, tuple, np.ndarray)):
        items = list(v.ravel()) if isinstance(v, np.ndarray) else v
        if len(items) > MAX_LIST_STRINGS:
            raise _value_error(path, "{} strings, at most {}".format(
                len(items), MAX_LIST_STRINGS))
        for j, s in enumerate(items):
            if not isinstance(s, (str, np.str_)):
                raise _type_error("{}[{}]".format(path, j),
                                  "a list holds only str, got {}".format(type(s).__name__))
            _check_str("{}[{}]".format(path, j), str(s), MAX_STRING_BYTES)
        out.strings_value.SetInParent()  # an empty list is a list, not unset
        out.strings_value.values.extend(str(s) for s in items)
    else:
        raise _type_error(path, "{} is not a payload type (str, int, float, bool, "
                                "list of str)".format(type(v).__name__))


def payload_pb(d, path="payload"):
    """The pb.Payload of one dict (None: an empty Payload, no fields)."""
    p = pb.Payload()
    if d is None:
        return p
    if not isinstance(d, dict):
        raise _type_error(path, "a payload is a dict, got {}".format(type(d).__name__))
    if len(d) > MAX_FIELDS:
        raise _value_error(path, "{} fields, at most {}".format(len(d), MAX_FIELDS))
    for name, v in d.items():
        if not isinstance(name, str):
            raise _type_error(path, "field name {!r} is not a str".format(name))
        fpath = "{}[{!r}]".format(path, name)
        if not name:
            raise _value_error(fpath, "empty field name")
        _check_str(fpath, name, MAX_FIELD_NAME_BYTES)
        _value_pb(fpath, v, p.fields[name])
    return p


def payloads_pb(payloads, n):
    """A list of n pb.Payload from a sequence of n dicts (or None entries);
    None for no payloads at all."""
    if payloads is None:
        return None
    if isinstance(payloads, dict) or not hasattr(payloads, "__len__"):
        raise PayloadTypeError("payloads must be a list of dicts (one per key), "
                               "got {}".format(type(payloads).__name__))
    if len(payloads) != n:
        raise InvalidArgument("{} payloads for {} keys".format(len(payloads), n))
    return [payload_pb(d, "payloads[{}]".format(i)) for i, d in enumerate(payloads)]


def payload_dict(p):
    """The dict of a pb.Payload (an empty dict for none)."""
    out = {}
    for name, v in p.fields.items():
        kind = v.WhichOneof("kind")
        if kind == "strings_value":
            out[name] = list(v.strings_value.values)
        elif kind is not None:
            out[name] = getattr(v, kind)
    return out


# -- filters -----------------------------------------------------------------
def filter_pb(f, path="filter"):
    """The pb.Filter of a filter dict; None for None. ValueError (npvdb.
    InvalidArgument) with the path of the first problem otherwise."""
    if f is None:
        return None
    out = pb.Filter()
    _fill_filter(f, path, out)
    return out


def _fill_filter(f, path, out):
    if not isinstance(f, dict):
        raise _value_error(path, "a filter is a dict of must / should / must_not, "
                                 "got {}".format(type(f).__name__))
    for name, conds in f.items():
        if name not in _CLAUSES:
            raise _value_error(path, "unknown clause {!r} (use must, should, "
                                     "must_not)".format(name))
        cpath = "{}.{}".format(path, name)
        if isinstance(conds, dict):
            conds = [conds]  # Qdrant accepts one condition without a list
        if not isinstance(conds, (list, tuple)):
            raise _value_error(cpath, "a list of conditions, got {}".format(
                type(conds).__name__))
        target = getattr(out, name)
        for i, c in enumerate(conds):
            _fill_condition(c, "{}[{}]".format(cpath, i), target.add())


def _fill_condition(c, path, out):
    if not isinstance(c, dict):
        raise _value_error(path, "a condition is a dict, got {}".format(type(c).__name__))
    if not c:
        raise _value_error(path, "empty condition")
    names = set(c)
    if names & set(_CLAUSES):
        extra = names - set(_CLAUSES)
        if extra:
            raise _value_error(path, "a nested filter holds only must / should / "
                                     "must_not, not {!r}".format(sorted(extra)[0]))
        out.filter.SetInParent()
        _fill_filter(c, path, out.filter)
        return
    if "has_field" in names:
        if len(names) != 1:
            other = sorted(names - {"has_field"})[0]
            raise _value_error(path, "has_field stands alone, not with {!r}".format(other))
        field = c["has_field"]
        if not isinstance(field, str) or not field:
            raise _value_error(path + ".has_field", "a non-empty field name")
        out.has_field = field
        return
    ops = names - {"key"}
    for op in sorted(ops):
        if op not in ("match", "range"):
            raise _value_error(path, "unknown operator {!r} (use match, range, "
                                     "has_field or a nested filter)".format(op))
    if len(ops) != 1:
        raise _value_error(path, "one of match or range, got {}".format(
            " and ".join(sorted(ops)) or "none"))
    key = c.get("key")
    if not isinstance(key, str) or not key:
        raise _value_error(path + ".key", "a non-empty field name, got {!r}".format(key))
    out.key = key
    op = ops.pop()
    if op == "match":
        _fill_match(c["match"], path + ".match", out.match)
    else:
        _fill_range(c["range"], path + ".range", out.range)


def _fill_match(m, path, out):
    if not isinstance(m, dict) or len(m) != 1:
        raise _value_error(path, "one of {{'value': v}} or {{'any': [...]}}, got "
                                 "{!r}".format(m))
    (op, v), = m.items()
    if op == "value":
        if isinstance(v, (str, np.str_)):
            out.keyword = str(v)
        elif _is_bool(v):
            out.boolean = bool(v)
        elif _is_int(v):
            out.integer = _int64(path + ".value", v)
        else:
            raise _type_error(path + ".value", "match a str, int or bool (a range for "
                                               "floats), got {}".format(type(v).__name__))
    elif op == "any":
        if isinstance(v, np.ndarray):
            v = v.ravel().tolist()
        if not isinstance(v, (list, tuple)) or not v:
            raise _value_error(path + ".any", "a non-empty list of str or of int")
        if len(v) > MAX_MATCH_ANY:
            raise _value_error(path + ".any", "{} values, at most {}".format(
                len(v), MAX_MATCH_ANY))
        if all(isinstance(x, (str, np.str_)) for x in v):
            out.keywords.values.extend(str(x) for x in v)
        elif all(_is_int(x) for x in v):
            out.integers.values.extend(
                _int64("{}.any[{}]".format(path, i), x) for i, x in enumerate(v))
        else:
            raise _type_error(path + ".any", "all str or all int, got {}".format(
                sorted({type(x).__name__ for x in v})))
    else:
        raise _value_error(path, "unknown operator {!r} (use value or any)".format(op))


def _bound(path, op, v):
    if not _is_real(v):
        raise _type_error("{}.{}".format(path, op), "a number, got {}".format(
            type(v).__name__))
    v = float(v)
    if not math.isfinite(v):
        raise _value_error("{}.{}".format(path, op), "{} is not finite".format(v))
    return v


def _fill_range(r, path, out):
    if not isinstance(r, dict) or not r:
        raise _value_error(path, "a dict of gt / gte / lt / lte")
    for op in r:
        if op not in ("gt", "gte", "lt", "lte"):
            raise _value_error(path, "unknown operator {!r} (use gt, gte, lt, lte)".format(op))
    b = {op: _bound(path, op, v) for op, v in r.items()}
    # Both strict and non-strict bounds on one side: the tighter one holds.
    if "gt" in b and "gte" in b:
        b.pop("gte" if b["gt"] >= b["gte"] else "gt")
    if "lt" in b and "lte" in b:
        b.pop("lte" if b["lt"] <= b["lte"] else "lt")
    for op, v in b.items():
        setattr(out, op, v)
