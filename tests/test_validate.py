"""The one event validator (indicators/validate.py): properties over arbitrary input, and the
same verdict with the same reason from every way in (HTTP, `events import`, the Spark reader)."""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indicators import validate
from indicators.validate import InvalidEvent, parse_event

# JSON values, with the strings that broke things: lone surrogates, huge numbers, dates.
text = st.one_of(st.text(), st.sampled_from(["\udc00", "\ud800x", "", " ", "9999-12-31T23:59:59-12:00",
                                               "0001-01-01T00:00:00+01:00", "2026-01-01", "1767225600",
                                               "$set", "$unset", "$delete", "user", "item", "view"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    text, st.just(10 ** 400))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                          st.dictionaries(text, kids, max_size=4)),
                           max_leaves=12)
EVENT_KEYS = sorted(validate.EVENT_KEYS)
event_like = st.fixed_dictionaries(
    {"event": st.one_of(text, scalars), "entityType": st.sampled_from(["user", "item", "x", 5]),
     "entityId": st.one_of(text, scalars)},
    optional={"targetEntityId": st.one_of(text, scalars), "targetEntityType": st.sampled_from(["item", "user"]),
              "eventTime": st.one_of(text, scalars), "properties": json_values},
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.one_of(event_like, json_values))
def test_an_event_is_valid_or_rejected_with_a_field_never_an_exception(obj):
    try:
        e = parse_event(obj, now_ms=0)
    except InvalidEvent as bad:
        assert bad.field and bad.problem
        str(bad).encode("utf-8")  # printable as is: no lone surrogate in the message
        return
    # A valid event can be stored and folded: strict JSON, UTF-8, and the same after a round trip.
    out = json.dumps(e.to_json(), allow_nan=False, ensure_ascii=False).encode("utf-8")
    again = parse_event(json.loads(out), now_ms=0)
    assert again == e


@pytest.mark.parametrize(("obj", "where", "field", "problem"), [
    ([1], "", "(body)", "an event must be a JSON object"),
    ("x", "events[2]", "events[2]", "an event must be a JSON object"),
    ({"event": "buy", "zz": 1, "aa": 2}, "", "aa", "unknown field of a PredictionIO event"),
    ({"event": "buy", " ": 1}, "e", "e.' '", "unknown field of a PredictionIO event"),
    ({"event": "buy", "entityId": "u"}, "e", "e.entityType", "is required"),
])
def test_an_event_of_the_wrong_shape_names_the_key(obj, where, field, problem):
    with pytest.raises(InvalidEvent) as bad:
        parse_event(obj, where, now_ms=0)
    assert (bad.value.field, bad.value.problem) == (field, problem)


def test_check_object_raises_the_callers_error():
    class Bad(Exception):
        def __init__(self, field: str, problem: str) -> None:
            super().__init__(field, problem)

    def check(obj):
        return validate.check_object(obj, "rules[0]", {"name", "bias"}, ("name",), not_object="not an object",
                                     unknown="unknown key", error=Bad)

    assert check({"name": "a"}) == {"name": "a"}
    for obj, args in ((None, ("rules[0]", "not an object")), ({"bias": 1}, ("rules[0].name", "is required")),
                      ({"x": 1}, ("rules[0].x", "unknown key"))):  # unknown before missing
        with pytest.raises(Bad) as bad:
            check(obj)
        assert bad.value.args == args


@SETTINGS
@given(json_values)
def test_the_request_parser_takes_any_json(obj):
    from query.errors import BadRequest
    from query.request import parse_query

    try:
        q = parse_query(obj)
    except BadRequest as bad:
        assert bad.field
        return
    for bias in (q.user_bias, q.item_bias, q.item_set_bias, *(r.bias for r in q.rules)):
        assert bias is None or math.isfinite(bias)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from query_testdata import make_backend

    from query.eventstore import EventStore
    from query.recommender import Recommender
    from query.service import App
    from query.settings import QuerySettings, ServeSettings

    tmp = tmp_path_factory.mktemp("app")
    rec = Recommender(make_backend(tmp / "index"), EventStore(tmp / "events.db"),
                      QuerySettings(indicators={"purchase": 1.0, "view": 0.5}))
    return App(rec, ServeSettings(token=None, max_body_bytes=65536))


def call(app, path: str, body: bytes) -> tuple[int, object]:
    """The WSGI app, as the server calls it."""
    got = {}

    def start_response(status, headers):
        got["status"] = int(status.split()[0])

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(body)}
    out = b"".join(app(environ, start_response))

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return got["status"], json.loads(out, parse_constant=refuse)  # strict: no NaN / Infinity


def dumps(obj) -> bytes:
    """Any JSON value as the bytes a client might send (surrogates escaped; NaN as is)."""
    return json.dumps(obj).encode()


@SETTINGS
@given(path=st.sampled_from(["/queries.json", "/events.json", "/batch/events.json"]),
       obj=st.one_of(event_like, json_values, st.lists(event_like, max_size=3)))
def test_no_json_gives_a_500_and_every_answer_is_strict_json(app, path, obj):
    status, body = call(app, path, dumps(obj))
    assert status < 500, body
    assert status in (200, 201) or "error" in body


@SETTINGS
@given(path=st.sampled_from(["/queries.json", "/events.json"]), raw=st.one_of(st.binary(), st.text()))
def test_no_bytes_give_a_500(app, path, raw):
    body = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    status, reply = call(app, path, body)
    assert status < 500, reply


TRICKY_LINES = [
    b'{"event": "view", "entityType": "user", "entityId": "u1", "targetEntityId": "i1",'
    b' "eventTime": "2026-01-01T00:00:00Z"}',
    b'{"event": "view", "entityType": "user", "entityId": 5, "targetEntityId": "i1"}',  # finding 8: a number
    b'{"event": "view", "entityType": "user", "entityId": "\\udc00", "targetEntityId": "i1"}',  # a surrogate
    b'{"event": "view", "entityType": "user", "entityId": "\xff\xfe", "targetEntityId": "i1"}',  # not UTF-8
    b'{"event": "view", "entityType": "user", "entityId": "u2", "targetEntityId": "i2",'
    b' "eventTime": "9999-12-31T23:59:59-12:00"}',
    b'{"event": "view", "entityType": "user", "entityId": "u2", "targetEntityId": "i2", "eventTime": "1767225600"}',
    b'{"event": "view", "entityType": "user", "entityId": " ", "targetEntityId": "i2"}',
    b'{"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"t": NaN}}',
    b'{"event": "$set", "entityType": "item", "entityId": "i1", "properties": {"t": ["a", 1]}}',
    b'{"event": "$set", "entityType": "user", "entityId": "u1", "properties": {"age": 3}}',
    b'{"event": "$unset", "entityType": "item", "entityId": "i1"}',
    b'{"event": "view", "entityType": "shop", "entityId": "s1", "targetEntityId": "i1"}',
    b'{"event": "view", "entityType": "user", "entityId": "u3", "targetEntityId": "i3", "extra": 1}',
    b'{"num": ' + b"1" * 5001 + b'}',
    b'[1, 2]',
    b'{not json',
    b'',
    b'{"event": "buy", "entityType": "user", "entityId": "u3", "targetEntityId": "i3", "eventTime": "2026-02-30"}',
]
TRICKY_CSV = [b"user,event,item,time", b"u1,view,i1,2026-01-01", b" u2 , view , i2 ,", b"u3,view,,2026-01-01",
              b"u4,$set,i4,", b"u5,view,i5,never", b"u6,view,\xff,2026-01-01", b"u7,view", b'"u,8",view,i8,1767225600']


@pytest.mark.spark
@pytest.mark.parametrize("name,lines", [("rows.jsonl", TRICKY_LINES), ("rows.csv", TRICKY_CSV)])
def test_train_import_and_http_agree_on_every_row(spark, tmp_path, name, lines):
    """Finding 8: training accepted rows that `events import` and HTTP reject. Every row gets
    the same verdict and reason from the Spark reader, `events import` and the HTTP API."""
    from indicators.reader import read_events
    from indicators.settings import InputSettings
    from query.errors import BadRequest
    from query.eventstore import now_ms, read_events_file
    from query.eventstore import parse_event as http_parse

    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    started = now_ms()
    imported = {line: r for line, r, _ in read_events_file(path)}
    by_import = sorted((line, r.field, r.problem) for line, r in imported.items() if isinstance(r, BadRequest))
    data = read_events(spark, [str(path)], InputSettings())
    by_spark = sorted((r.line, r.field, r.problem) for r in data.iter_rejected())
    assert by_spark == by_import
    assert data.counts.accepted == len(imported) - len(by_import)
    good = sorted((e.entity_id, e.event, e.target_entity_id, e.time_ms) for e in imported.values()
                  if not isinstance(e, BadRequest) and e.target_entity_id is not None
                  and e.time_ms < started)  # events without a time: now on import, none in Spark
    spark_good = sorted((r.user, r.event, r.item, int(r.time.timestamp() * 1000)) for r in data.events.collect()
                        if r.time is not None)
    assert spark_good == good
    if name.endswith(".jsonl"):  # the HTTP API on the lines that are JSON objects
        for line, raw in enumerate(lines, 1):
            try:
                obj = validate.loads_strict(validate.decode_line(raw))
            except InvalidEvent:
                continue
            if not isinstance(obj, dict):
                continue
            try:
                http_parse(obj)
                verdict = None
            except BadRequest as bad:
                verdict = (bad.field, bad.problem)
            expected = imported[line]
            assert verdict == (None if not isinstance(expected, BadRequest) else (expected.field, expected.problem))

