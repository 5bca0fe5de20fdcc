"""query/inputmap.py: CSV rows -> events by mapping rules; validation names file, line, field."""

from __future__ import annotations

import pytest

from query.errors import EventFileError, ImportRejected
from query.eventstore import EventStore
from query.inputmap import MappingError, import_mapped, load_mapping, mapping_from_dict, read_mapped

RATINGS = {
    "user": "userId", "item": "movieId", "time": "timestamp",
    "event": [{"name": "rate"}, {"name": "like", "when": "rating >= 4"}],
}
MOVIES = {
    "item": "movieId",
    "properties": {"title": "title",
                   "category": {"column": "genres", "split": "|", "ignore": ["(no genres listed)"]}},
}


def write(path, text):
    path.write_text(text)
    return path


def events_of(path, mapping):
    return [(line, [(e.event, e.entity_id, e.target_entity_id, e.properties) for e in result])
            for line, result, _ in read_mapped(path, mapping)]


def test_ratings_every_row_rates_and_high_ones_like(tmp_path):
    f = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
              "1,10,4.0,964982703\n1,20,3.5,964982704\n2,10,5,964982705\n")
    got = events_of(f, mapping_from_dict(RATINGS))
    assert got == [
        (2, [("rate", "1", "10", None), ("like", "1", "10", None)]),
        (3, [("rate", "1", "20", None)]),
        (4, [("rate", "2", "10", None), ("like", "2", "10", None)]),
    ]
    first = next(read_mapped(f, mapping_from_dict(RATINGS)))[1][0]
    assert first.time_ms == 964982703_000  # epoch seconds


def test_event_named_by_a_column_and_text_condition(tmp_path):
    f = write(tmp_path / "log.tsv", "who\twhat\taction\tstore\nu1\ti1\tview\tweb\nu2\ti2\tbuy\tshop\n")
    mapping = mapping_from_dict({"user": "who", "item": "what",
                                 "event": [{"from": "action"}, {"name": "online", "when": "store == web"}]})
    assert events_of(f, mapping) == [(2, [("view", "u1", "i1", None), ("online", "u1", "i1", None)]),
                                     (3, [("buy", "u2", "i2", None)])]


def test_item_properties_split_and_ignored_values(tmp_path):
    f = write(tmp_path / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
              '2,"Heat, the film",(no genres listed)\n')
    got = events_of(f, mapping_from_dict(MOVIES))
    assert got == [
        (2, [("$set", "1", None, {"title": "Toy Story (1995)", "category": ["Adventure", "Animation"]})]),
        (3, [("$set", "2", None, {"title": "Heat, the film"})]),
    ]


def test_bad_rows_name_line_and_column_and_counts_add_up(tmp_path):
    f = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"
              "1,10,4.0,964982703\n1,,3,964982704\n2,11,great,964982705\n3,12\n4,13,2,yesterday\n")
    store = EventStore(tmp_path / "events.db")
    with pytest.raises(ImportRejected) as e:
        import_mapped(store, f, mapping_from_dict(RATINGS))
    assert e.value.rejected == 4 and e.value.total == 5
    assert e.value.first == [(3, "movieId", "missing"),
                             (4, "rating", "'great' is not a number (rule: rating >= 4)"),
                             (5, "(row)", "2 columns, header has 4"),
                             (6, "timestamp", "'yesterday' is not an ISO-8601 date/time")]
    assert f"{f}:3: movieId: missing" in str(e.value)
    assert store.stats()["events"] == 0  # nothing imported

    rejects = tmp_path / "rejects.tsv"
    report = import_mapped(store, f, mapping_from_dict(RATINGS), rejects=rejects)
    assert (report.rows, report.accepted, report.rejected, report.user_events) == (5, 1, 4, 2)
    assert rejects.read_text().splitlines()[0] == "3\tmovieId: missing\t1,,3,964982704"


def test_import_stores_events_and_item_properties(tmp_path):
    store = EventStore(tmp_path / "events.db")
    f = write(tmp_path / "movies.csv", "movieId,title,genres\n1,Toy Story,Adventure|Animation\n")
    report = import_mapped(store, f, mapping_from_dict(MOVIES))
    assert (report.rows, report.accepted, report.item_events, len(report.item_changes)) == (1, 1, 1, 1)
    assert store.item_properties("1") == {"category": ["Adventure", "Animation"], "title": "Toy Story"}


def test_header_without_a_mapped_column(tmp_path):
    f = write(tmp_path / "ratings.csv", "user,movieId,rating,timestamp\n1,10,4,1\n")
    with pytest.raises(EventFileError, match=r"ratings.csv:1: .*no column 'userId'"):
        list(read_mapped(f, mapping_from_dict(RATINGS)))


@pytest.mark.parametrize("data, key", [
    ({"user": "u", "event": [{"name": "x"}]}, "item"),
    ({"item": "i", "event": [{"name": "x"}]}, "user"),
    ({"item": "i", "user": "u", "event": [{"name": "x", "from": "y"}]}, "event[0]"),
    ({"item": "i", "user": "u", "event": [{"name": "x", "when": "rating ~ 4"}]}, "event[0].when"),
    ({"item": "i", "user": "u", "event": [{"name": "x", "if": "a"}]}, "event[0].if"),
    ({"item": "i", "properties": {"genre": {"split": "|"}}}, "properties.genre.column"),
    ({"item": "i"}, "event"),
    ({"item": "i", "colums": {}}, "colums"),
])
def test_mapping_errors_name_the_key(data, key):
    with pytest.raises(MappingError) as e:
        mapping_from_dict(data, "m.toml")
    assert e.value.key == key and str(e.value).startswith(f"m.toml: {key}: ")


def test_load_mapping_file(tmp_path):
    f = write(tmp_path / "m.toml", 'item = "movieId"\n[properties]\ngenres = { column = "genres", split = "|" }\n')
    assert load_mapping(f).properties[0].split == "|"
    with pytest.raises(MappingError, match="not found"):
        load_mapping(tmp_path / "missing.toml")
    with pytest.raises(MappingError, match="bad.toml: \\(file\\)"):
        load_mapping(write(tmp_path / "bad.toml", "item = \n"))
