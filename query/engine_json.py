"""`cooccur config from-engine-json`: a Universal Recommender engine.json as a cooccur config.

Reads both shapes of the UR's config: the PredictionIO template (UR v0.2-0.9:
`datasource.params`, `algorithms[].params`, `sparkConf`) and Harness (`engineId`,
`algorithm`, `dataset`, `sparkConf`). Every parameter is either carried over (to a cooccur
key), carried over with a different meaning (said how), or listed as not carried over (said
why); nothing is dropped silently except `comment` / `description` texts.
docs/ur-migration.md has the whole table and the sources it was checked against.

Imports only the settings dataclasses: no pyspark, no JVM.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from indexer.settings import ElasticsearchSettings, IndexSettings
from indicators.settings import IndicatorSettings, RankingSettings, TrainSettings, parse_duration

from .errors import BadRequest, QueryError, SettingsError
from .request import parse_rules
from .settings import EventSettings, QuerySettings

DOCS = "docs/ur-migration.md"
# Texts that document a config, not parameters of it: ignored without a note.
COMMENT_KEYS = {"comment", "comments", "description", "_comment"}
# Harness engines that are not the UR share the file shape; their configs are refused.
OTHER_ENGINES = re.compile(r"navhinting|\.cb\.|CBEngine|scaffold|contextual", re.IGNORECASE)
# Mahout's Kryo set-up: the UR's matrices need it, cooccur's Spark job moves Arrow batches.
MAHOUT_SPARK = {
    "spark.serializer", "spark.kryo.registrator", "spark.kryo.referenceTracking",
    "spark.kryoserializer.buffer", "spark.kryoserializer.buffer.mb", "spark.kryoserializer.buffer.max",
    "spark.kryo.registrationRequired", "spark.kryo.classesToRegister",
}
POPULARITY = ("popular", "trending", "hot")
ES_DEFAULT_PORT = 9200


class EngineJsonError(QueryError):
    """The engine.json cannot be converted: missing, not JSON, or not a UR's config.
    `file` is the file, `path` the JSON path of the offending value ("" for the whole file)."""

    hint = f"give the engine.json of a Universal Recommender (PredictionIO template or Harness); see {DOCS}"

    def __init__(self, file: str, path: str, problem: str, *, hint: str = "") -> None:
        super().__init__(f"{file}: {path + ': ' if path else ''}{problem}", hint=hint)
        self.file = file
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class Note:
    """One engine.json parameter (its JSON path) and what became of it."""

    param: str
    text: str

    def __str__(self) -> str:
        return f"{self.param}: {self.text}"


@dataclass
class Conversion:
    """A converted engine.json: cooccur config sections and what became of each parameter."""

    source: str
    shape: str
    """"PredictionIO" (the UR template's engine.json) or "Harness"."""
    train: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    remarks: list[Note] = field(default_factory=list)
    """How the file was read (not strict JSON, a key given twice)."""
    carried: list[Note] = field(default_factory=list)
    """Parameters carried over with the UR's meaning: text = the cooccur key."""
    different: list[Note] = field(default_factory=list)
    """Parameters carried over with a different meaning: text = key and how it differs."""
    dropped: list[Note] = field(default_factory=list)
    """Parameters not carried over: text = why."""

    def sections(self) -> dict[str, dict[str, Any]]:
        """The config as `cooccur -c` reads it (tomllib's shape), empty sections left out."""
        return {name: value for name, value in (
            ("train", self.train), ("index", self.index), ("query", self.query), ("events", self.events),
        ) if value}

    def report(self) -> list[str]:
        """What a user should read: the parameters not carried over, and those carried over
        differently (both also head the TOML as comments)."""
        lines = [f"converted {self.source} ({self.shape} Universal Recommender): "
                 f"{len(self.carried)} parameter(s) carried over, {len(self.different)} with a different "
                 f"meaning, {len(self.dropped)} not carried over (see {DOCS})"]
        lines += [f"note: {n}" for n in self.remarks]
        if self.different:
            lines.append("carried over with a different meaning:")
            lines += [f"  - {n}" for n in self.different]
        if self.dropped:
            lines.append("not carried over:")
            lines += [f"  - {n}" for n in self.dropped]
        return lines

    def toml(self) -> str:
        """The config file: the report as comments, then [train], [index], [query], [events]."""
        head = [f"# cooccur config converted from {self.source} by `cooccur config from-engine-json`.",
                f"# Every engine.json parameter and its cooccur counterpart: {DOCS}."]
        head += [f"# {line}" for line in self.report()[1:]]
        return "\n".join(head) + "\n\n" + dump_toml(self.sections())


# --------------------------------------------------------------------------- reading
def read_engine_json(path: str | Path) -> tuple[dict[str, Any], list[Note]]:
    """The parsed engine.json and notes on how it was read. The UR's own files are not
    always strict JSON (a trailing comma in its template's engine.json, `//` comments in
    its docs), and PredictionIO read them anyway: comments and trailing commas are blanked
    out (positions kept) when strict parsing fails. A repeated key: the last one wins, as
    in PredictionIO's json4s, and is noted."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EngineJsonError(file, "", "no such file", hint="check the path of the engine.json") from None
    except IsADirectoryError:
        raise EngineJsonError(file, "", "is a directory, not an engine.json file") from None
    except UnicodeDecodeError as e:
        raise EngineJsonError(file, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise EngineJsonError(file, "", f"cannot be read: {e.strerror or e}") from None
    notes: list[Note] = []
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                repeated.append(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as strict:
        relaxed, what = _relax(text)
        try:
            data = json.loads(relaxed, object_pairs_hook=pairs)
        except json.JSONDecodeError as e:
            raise EngineJsonError(
                file, "", f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}",
                hint="fix the JSON there (a missing comma or quote is the usual cause)") from None
        notes.append(Note(file, f"not strict JSON ({', '.join(what)}; first at line {strict.lineno}, "
                                    f"column {strict.colno}): read as PredictionIO did, ignoring them"))
    for key in dict.fromkeys(repeated):
        notes.append(Note(key, "given more than once in an object: the last value is used, as PredictionIO did"))
    if not isinstance(data, dict):
        raise EngineJsonError(file, "", f"not a UR engine.json: the top level is a JSON {_kind(data)}, "
                                        "not an object")
    return data, notes


def _relax(text: str) -> tuple[str, list[str]]:
    """`text` with // and /* */ comments and trailing commas outside strings replaced by
    spaces (newlines kept, so error positions stay right); what was found."""
    out = list(text)
    found: set[str] = set()
    i, n = 0, len(text)
    last_comma = -1
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            last_comma = -1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            found.add("// comments")
            i = j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            found.add("/* */ comments")
            i = j
            continue
        elif c == ",":
            last_comma = i
        elif c in "}]":
            if last_comma >= 0:
                out[last_comma] = " "
                found.add("trailing commas")
            last_comma = -1
        elif not c.isspace():
            last_comma = -1
        i += 1
    return "".join(out), sorted(found)


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# --------------------------------------------------------------------------- converting
def convert_file(path: str | Path) -> Conversion:
    """Read and convert one engine.json (raises EngineJsonError)."""
    data, notes = read_engine_json(path)
    conversion = convert(data, str(path))
    conversion.remarks[:0] = notes
    return conversion


def convert(engine: dict[str, Any], source: str = "engine.json") -> Conversion:
    """Convert a parsed engine.json (raises EngineJsonError when it is not a UR's)."""
    return _Converter(engine, source).run()


class _Converter:
    def __init__(self, engine: dict[str, Any], source: str) -> None:
        self.engine = engine
        self.source = source
        harness = "algorithm" in engine or "engineId" in engine
        self.c = Conversion(source, "Harness" if harness else "PredictionIO")
        self.actions: list[str] = []
        self.no_backfill = False

    # ---- notes
    def carry(self, param: str, key: str) -> None:
        self.c.carried.append(Note(param, key))

    def differ(self, param: str, text: str) -> None:
        self.c.different.append(Note(param, text))

    def drop(self, param: str, why: str) -> None:
        self.c.dropped.append(Note(param, why))

    def fail(self, path: str, problem: str, hint: str = "") -> EngineJsonError:
        return EngineJsonError(self.source, path, problem, hint=hint)

    def unknown(self, path: str, key: str, known: set[str]) -> None:
        close = [k for k in known if k.lower() == key.lower()] or difflib.get_close_matches(key, sorted(known), 1)
        hint = f" (did you mean {close[0]}? names are case-sensitive: the UR ignored this one too)" if close else ""
        self.drop(path, f"not a Universal Recommender parameter{hint}")

    # ---- typed reads: a bad value is a note, not an error (the rest still converts)
    def integer(self, path: str, value: Any, low: int = 0, high: int = 2**31 - 1) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or value != int(value) or not low <= value <= high:
            self.drop(path, f"expected a whole number from {low} to {high}, not {json.dumps(value)}")
            return None
        return int(value)

    def number(self, path: str, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.drop(path, f"expected a number, not {json.dumps(value)}")
            return None
        return float(value)

    def string(self, path: str, value: Any) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.drop(path, f"expected a non-empty string, not {json.dumps(value)}")
            return None
        return value

    def strings(self, path: str, value: Any, allow_empty: bool = True) -> list[str] | None:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) \
                or (not value and not allow_empty):
            self.drop(path, f"expected a list of names, not {json.dumps(value)}")
            return None
        return list(dict.fromkeys(value))

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.drop(path, f"expected true or false, not {json.dumps(value)}")
            return None
        return value

    # ---- the walk
    def run(self) -> Conversion:
        e = self.engine
        factory = e.get("engineFactory")
        if isinstance(factory, str) and OTHER_ENGINES.search(factory):
            raise self.fail("engineFactory", f"{factory!r} is not the Universal Recommender",
                            hint=f"only UR engine.json files convert; see {DOCS}")
        if self.c.shape == "Harness":
            params, params_path = e.get("algorithm"), "algorithm"
            datasource, ds_path = None, ""
        else:
            params, params_path = self.pio_algorithm(e)
            ds = e.get("datasource")
            datasource = ds.get("params") if isinstance(ds, dict) else None
            ds_path = "datasource.params"
            if isinstance(ds, dict):
                for key in ds:
                    if key not in ("params", *COMMENT_KEYS):
                        self.unknown(f"datasource.{key}", key, {"params"})
        if params is not None and not isinstance(params, dict):
            raise self.fail(params_path, f"must be an object, not a JSON {_kind(params)}")
        params = params or {}
        if datasource is not None and not isinstance(datasource, dict):
            raise self.fail(ds_path, f"must be an object, not a JSON {_kind(datasource)}")
        self.indicators(params, params_path, datasource or {}, ds_path)
        self.algorithm(params, params_path)
        if datasource:
            self.datasource(datasource, ds_path)
        if self.c.shape == "Harness":
            self.top_level(e, {"engineId", "engineFactory", "algorithm", "sparkConf", "dataset",
                               "modelContainer", "mirrorType", "mirrorLocation"})
            self.harness_only(e)
        else:
            self.top_level(e, {"id", "engineFactory", "datasource", "algorithms", "sparkConf",
                               "preparator", "serving", "evaluator", "evaluatorClass"})
        self.spark(e.get("sparkConf"))
        if "min_events_per_user" not in self.c.train:
            self.c.train["min_events_per_user"] = 1
            self.differ("(users counted)", "[train] min_events_per_user = 1: the UR counts only users with a "
                                           "primary event (in N and in the secondary actions' counts); "
                                           "cooccur's default, 0, counts every user with an indicator event")
        self.check()
        return self.c

    def top_level(self, e: dict[str, Any], known: set[str]) -> None:
        for key, value in e.items():
            if key in COMMENT_KEYS or key in ("algorithm", "algorithms", "datasource", "sparkConf", "dataset"):
                continue
            if key == "engineFactory":
                self.drop(key, "the UR's Scala class; cooccur has one engine")
            elif key == "id":
                self.drop(key, "PredictionIO's engine variant id; cooccur has none")
            elif key in ("preparator", "serving", "evaluator", "evaluatorClass"):
                self.drop(key, "a PredictionIO component's parameters; the UR defines none")
            elif key == "engineId":
                if isinstance(value, str) and value and "name" not in self.c.index:
                    self.c.index["name"] = value
                    self.differ(key, "[index] name: Harness named the Elasticsearch index after the engine; "
                                     "cooccur's name is an alias over versioned indices (name_<time>)")
                else:
                    self.drop(key, "an engine id, not needed (indexName is used for [index] name)")
            elif key in ("modelContainer", "mirrorType", "mirrorLocation"):
                self.drop(key, "Harness's model and event mirroring; cooccur's model is a directory "
                               "(`cooccur train -o`) and `cooccur events export` copies the event store")
            else:
                self.unknown(key, key, known)

    def pio_algorithm(self, e: dict[str, Any]) -> tuple[Any, str]:
        algos = e.get("algorithms")
        if algos is None:
            if "datasource" not in e:
                raise self.fail("", "not a UR engine.json: no `algorithms` (PredictionIO template) or "
                                    "`algorithm` (Harness) section")
            return None, "algorithms[0].params"
        if not isinstance(algos, list) or not algos or not all(isinstance(a, dict) for a in algos):
            raise self.fail("algorithms", "must be a list of {name, params} objects")
        at = next((i for i, a in enumerate(algos) if a.get("name") == "ur"), None)
        if at is None:
            at = next((i for i, a in enumerate(algos) if isinstance(a.get("params"), dict)
                       and ("eventNames" in a["params"] or "indicators" in a["params"])), 0)
        for i, a in enumerate(algos):
            if i != at:
                self.drop(f"algorithms[{i}]", f"cooccur runs one algorithm: the UR's, algorithms[{at}]")
                continue
            for key in a:
                if key not in ("name", "params", *COMMENT_KEYS):
                    self.unknown(f"algorithms[{i}].{key}", key, {"name", "params"})
        return algos[at].get("params"), f"algorithms[{at}].params"

    # ---- indicators ([train] primary, [[train.indicators]], caps)
    def indicators(self, p: dict[str, Any], at: str, ds: dict[str, Any], ds_at: str) -> None:
        names_ds = self.strings(f"{ds_at}.eventNames", ds["eventNames"], False) if "eventNames" in ds else None
        names_algo = self.strings(f"{at}.eventNames", p["eventNames"], False) if "eventNames" in p else None
        entries: list[tuple[str, dict[str, Any]]] = []
        if "indicators" in p:
            raw = p["indicators"]
            if not isinstance(raw, list) or not raw:
                raise self.fail(f"{at}.indicators", "must be a non-empty list of {name, ...} objects")
            for i, ind in enumerate(raw):
                where = f"{at}.indicators[{i}]"
                if isinstance(ind, str):  # a bare name, as some configs write it
                    ind = {"name": ind}
                if not isinstance(ind, dict) or not isinstance(ind.get("name"), str) or not ind["name"]:
                    if i == 0:
                        raise self.fail(where, "the primary indicator needs a name")
                    self.drop(where, "an indicator needs a name")
                    continue
                entries.append((where, ind))
            self.carry(f"{at}.indicators", "[train] primary (the first) and [[train.indicators]] name")
            for where_names, names in ((f"{at}.eventNames", names_algo), (f"{ds_at}.eventNames", names_ds)):
                if names is not None:
                    listed = [ind["name"] for _, ind in entries]
                    if names == listed:
                        self.carry(where_names, "[[train.indicators]] name (the same list as indicators)")
                    else:
                        self.differ(where_names, f"differs from {at}.indicators {listed}: the indicators are used")
        elif names_algo or names_ds:
            names = names_algo or names_ds or []  # (one of them is set here)
            where_names = f"{at}.eventNames" if names_algo else f"{ds_at}.eventNames"
            entries = [(f"{where_names}[{i}]", {"name": n}) for i, n in enumerate(names)]
            self.carry(where_names, "[train] primary (the first) and [[train.indicators]] name")
            if names_algo and names_ds:
                if names_ds == names_algo:
                    self.carry(f"{ds_at}.eventNames", "[[train.indicators]] name (the same list)")
                else:
                    self.differ(f"{ds_at}.eventNames", f"differs from {at}.eventNames {names_algo}: "
                                                       "the algorithm's list is used (the UR requires them equal)")
        else:
            raise self.fail(at, "not a UR engine.json: no `eventNames` or `indicators` (the UR requires one)",
                            hint="the first event name is the primary action; see " + DOCS)

        default_k = 50
        if "maxCorrelatorsPerEventType" in p:
            k = self.integer(f"{at}.maxCorrelatorsPerEventType", p["maxCorrelatorsPerEventType"], 1)
            if k is not None:
                default_k = k
                if "indicators" in p:
                    self.differ(f"{at}.maxCorrelatorsPerEventType",
                                "[[train.indicators]] max_correlators of the indicators without their own "
                                "maxCorrelatorsPerItem, as the UR documents it (UR 0.7's code used 50 for them)")
                else:
                    self.carry(f"{at}.maxCorrelatorsPerEventType", "[[train.indicators]] max_correlators")
        caps: dict[str, int] = {}
        per_query: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for where, ind in entries:
            name = ind["name"]
            if name in [o["name"] for o in out]:
                self.drop(where, f"{name!r} is listed twice: the first is used")
                continue
            entry: dict[str, Any] = {"name": name}
            for key, value in ind.items():
                path = f"{where}.{key}"
                if key == "name" or key in COMMENT_KEYS:
                    continue
                if key == "maxCorrelatorsPerItem":
                    k = self.integer(path, value, 1)
                    if k is not None:
                        entry["max_correlators"] = k
                        self.carry(path, "[[train.indicators]] max_correlators")
                elif key == "minLLR":
                    v = self.number(path, value)
                    if v is not None:
                        entry["min_llr"] = v
                        self.carry(path, "[[train.indicators]] min_llr")
                elif key == "maxItemsPerUser":
                    k = self.integer(path, value, 0)
                    if k is not None:
                        caps[path] = k
                elif key == "maxIndicatorsPerQuery":
                    k = self.integer(path, value, 0)
                    if k is not None:
                        per_query[path] = k
                elif key == "aliases":
                    self.drop(path, "cooccur has no event aliases: give the events the indicator's name when "
                                    "importing them (the event store and the files keep event names as sent)")
                else:
                    self.unknown(path, key, {"name", "maxCorrelatorsPerItem", "minLLR", "maxItemsPerUser",
                                             "maxIndicatorsPerQuery", "aliases"})
            if "max_correlators" not in entry:
                # the UR's 50 (cooccur's own default is 100): a migrated model keeps its lists
                entry["max_correlators"] = default_k
            out.append(entry)
        self.actions = [o["name"] for o in out]
        self.c.train["primary"] = self.actions[0]
        self.c.train["indicators"] = out
        self.caps(p, at, caps)
        self.query_length(p, at, per_query)

    def caps(self, p: dict[str, Any], at: str, per_indicator: dict[str, int]) -> None:
        """maxEventsPerEventType (and UR 0.7's per-indicator maxItemsPerUser): Mahout's
        sampleDownAndBinarize applies it to users' and items' interactions alike."""
        cap = None
        if "maxEventsPerEventType" in p:
            cap = self.integer(f"{at}.maxEventsPerEventType", p["maxEventsPerEventType"], 0)
            if cap is not None:
                self.differ(f"{at}.maxEventsPerEventType",
                            "[train] max_interactions_per_user and max_users_per_item: the UR samples at random "
                            "(Mahout's sampleDownAndBinarize, per user and per item at once); cooccur keeps "
                            "exactly the cap, chosen by a seeded hash, users first, then items")
        if per_indicator:
            values = set(per_indicator.values())
            biggest = max(values | ({cap} if cap is not None else set()))
            for path, v in per_indicator.items():
                self.differ(path, "[train] max_interactions_per_user and max_users_per_item"
                            + ("" if len(values) == 1 and (cap is None or cap == v) else
                               f": cooccur has one cap for every action, the largest given ({biggest}) is used")
                            + "; UR 0.7 also took this many recent events of the action into a user's query "
                              "([query] max_query_events does that here)")
            cap = biggest
        if cap is not None and cap != 500:
            self.c.train["max_interactions_per_user"] = cap
            self.c.train["max_users_per_item"] = cap

    def query_length(self, p: dict[str, Any], at: str, per_indicator: dict[str, int]) -> None:
        length = None
        if "maxQueryEvents" in p:
            length = self.integer(f"{at}.maxQueryEvents", p["maxQueryEvents"], 0)
            if length is not None:
                if per_indicator:
                    self.drop(f"{at}.maxQueryEvents",
                              "the indicators' maxIndicatorsPerQuery override it (as in the UR)")
                    length = None
                else:
                    self.differ(f"{at}.maxQueryEvents",
                                "[query] max_query_events: cooccur takes this many distinct items per action "
                                "from a user's history; the UR's use changed across versions (up to v0.5 this "
                                "many recent events over all actions together; v0.7 caps each action at the "
                                "indicator's maxItemsPerUser, 100 by default)")
        if per_indicator:
            values = set(per_indicator.values())
            length = max(values)
            for path in per_indicator:
                self.differ(path, "[query] max_query_events (most recent distinct items per action)"
                            + ("" if len(values) == 1 else
                               f": cooccur has one length for every action, the largest given ({length}) is used")
                            + "; Harness also used it as the indicator's downsampling cap: cooccur keeps "
                              "max_interactions_per_user for that")
        if length is not None:
            self.c.query["max_query_events"] = length

    # ---- the rest of the algorithm's parameters
    def algorithm(self, p: dict[str, Any], at: str) -> None:
        handled = {"eventNames", "indicators", "maxCorrelatorsPerEventType", "maxEventsPerEventType",
                   "maxQueryEvents"}
        query_fields = {f.name for f in fields(QuerySettings)}
        self.no_backfill = p.get("recsModel") == "collabFiltering"
        date_fields: list[str] = []
        rankings_seen = False
        for key, value in p.items():
            path = f"{at}.{key}"
            if key in handled or key in COMMENT_KEYS:
                continue
            if key == "appName":
                self.drop(path, "a PredictionIO app: cooccur reads events from files or its event store "
                                "([events] path), one per config")
            elif key == "indexName":
                name = self.string(path, value)
                if name is not None:
                    self.c.index["name"] = name
                    self.differ(path, "[index] name: with Elasticsearch an alias over versioned indices "
                                      "(name_<time>), switched atomically; embedded: the index's directory")
            elif key == "typeName":
                self.drop(path, "Elasticsearch mapping types are gone since Elasticsearch 7; cooccur's "
                                "documents have none")
            elif key == "recsModel":
                self.recs_model(path, value)
            elif key in ("blacklistEvents", "blacklistIndicators"):
                names = self.strings(path, value)
                if names is not None:
                    self.c.query["blacklist_actions"] = names
                    self.carry(path, "[query] blacklist_actions")
            elif key == "num":
                n = self.integer(path, value, 0)
                if n is not None:
                    self.c.query["num"] = n
                    if n > 1000:
                        self.c.query["max_num"] = n
                    self.carry(path, "[query] num")
            elif key == "returnSelf":
                b = self.boolean(path, value)
                if b is not None:
                    self.c.query["return_self"] = b
                    self.carry(path, "[query] return_self")
            elif key in ("userBias", "itemBias", "itemSetBias"):
                target = re.sub(r"([A-Z])", r"_\1", key).lower()
                v = self.number(path, value)
                if v is None:
                    continue
                if target in query_fields and v == 0 and key != "itemSetBias":
                    self.c.query[target] = 1.0
                    self.differ(path, f"[query] {target} = 1.0: the UR treats 0 as 1 (URAlgorithm boosts the "
                                      "history or item part only by a bias > 0 and != 1); cooccur's 0 would leave "
                                      "that part out of the query")
                elif target in query_fields:
                    self.c.query[target] = v
                    self.carry(path, f"[query] {target}")
                else:
                    self.drop(path, "cooccur has no config default for it; a request can still send "
                                    f"{key} (docs/api.md)")
            elif key in ("fields", "rules"):
                self.rules(path, value)
            elif key in ("dateName", "availableDateName", "expireDateName"):
                name = self.string(path, value)
                if name is None:
                    continue
                date_fields.append(name)
                if key == "dateName":
                    self.differ(path, "[index] date_fields: indexed as a date, so a request's dateRange "
                                      "(which names the property itself) can filter on it")
                else:
                    target = "available_date_field" if key == "availableDateName" else "expire_date_field"
                    self.c.query[target] = name
                    self.carry(path, f"[query] {target} (and [index] date_fields)")
            elif key in ("rankings", "backfillField", "backfills"):
                if rankings_seen:
                    self.drop(path, "rankings are given twice: the first of rankings / backfillField / "
                                    "backfills is used")
                    continue
                rankings_seen = True
                self.rankings(path, value)
            elif key == "seed":
                seed = self.integer(path, value, -(2**63), 2**63 - 1)
                if seed is not None:
                    self.c.train["seed"] = seed
                    self.differ(path, "[train] seed: the same seed gives the same model in cooccur; "
                                      "without it cooccur uses 0 (the UR a random seed per training)")
            elif key == "numESWriteConnections":
                self.drop(path, "cooccur's bulk indexing is one connection with chunked, retried requests "
                                "([index.elasticsearch] chunk_size, max_retries)")
            elif key == "minEventsPerUser":
                self.min_events(path, value)
            else:
                self.unknown(path, key, {
                    "appName", "indexName", "typeName", "recsModel", "eventNames", "indicators",
                    "blacklistEvents", "blacklistIndicators", "maxQueryEvents", "maxEventsPerEventType",
                    "maxCorrelatorsPerEventType", "num", "userBias", "itemBias", "itemSetBias", "returnSelf",
                    "fields", "rules", "rankings", "backfillField", "availableDateName", "expireDateName",
                    "dateName", "seed", "numESWriteConnections", "minEventsPerUser"})
        if date_fields:
            defaults = IndexSettings().date_fields
            self.c.index["date_fields"] = list(dict.fromkeys(defaults + date_fields))

    def recs_model(self, path: str, value: Any) -> None:
        if value == "all":
            self.carry(path, "the default: indicators, with popularity backfill")
        elif value == "collabFiltering":
            self.c.query["backfill"] = "none"
            self.carry(path, '[query] backfill = "none"')
        elif value == "backfill":
            self.drop(path, "cooccur always trains the indicators; a request with no history gets the "
                            "backfill ranking alone")
        else:
            self.drop(path, f"expected all, collabFiltering or backfill, not {json.dumps(value)}")

    def rules(self, path: str, value: Any) -> None:
        if not isinstance(value, list):
            self.drop(path, f"expected a list of {{name, values, bias}}, not {json.dumps(value)}")
            return
        kept = []
        for i, raw in enumerate(value):
            try:
                kept += [r.as_dict() for r in parse_rules([raw], "rule")]
            except BadRequest as e:
                self.drop(e.field.replace("rule[0]", f"{path}[{i}]", 1), e.problem)
        if kept:
            self.c.query["rules"] = kept
            self.differ(path, "[query] rules: applied to every request, as in the UR; bias > 0 boosts, "
                              "< 0 keeps only matching items, 0 excludes them (docs/api.md says how request "
                              "rules combine with these)")

    def rankings(self, path: str, value: Any) -> None:
        """UR rankings (v0.5+), backfillField (v0.2-0.4, an object) or backfills (a list):
        cooccur computes popular, trending and hot over one window of one set of actions;
        the first popularity ranking sets them and [query] backfill."""
        entries = [value] if isinstance(value, dict) else value
        if not isinstance(entries, list) or not all(isinstance(r, dict) for r in entries):
            self.drop(path, f"expected a list of ranking objects, not {json.dumps(value)}")
            return
        used = False
        for i, r in enumerate(entries):
            where = path if isinstance(value, dict) else f"{path}[{i}]"
            kind = r.get("type", r.get("backfillType", "popular"))
            if kind not in POPULARITY:
                self.drop(where, f"ranking type {kind!r}: cooccur ranks by popular, trending and hot only "
                                 "(random and userDefined rankings do not exist here)")
                continue
            if used:
                self.drop(where, "cooccur has one ranking window and one set of ranked actions: the first "
                                 "popularity ranking's are used (all three of popular, trending and hot are "
                                 "computed from it)")
                continue
            used = True
            type_key = next((k for k in ("type", "backfillType") if k in r), None)
            if self.no_backfill:
                self.drop(f"{where}.{type_key}" if type_key else where,
                          "recsModel is collabFiltering: no backfill (the window and actions below still "
                          "define cooccur's rankings, which feed its popularity prior)")
            else:
                self.c.query["backfill"] = kind
                self.carry(f"{where}.{type_key}" if type_key else where,
                           "[query] backfill" + ("" if type_key else ' = "popular" (the UR\'s default type)'))
            if "duration" not in r:
                self.differ(where, "no duration: the UR counted 3 days (v0.2-0.4) or 3650 days (v0.5+) back; "
                                   "cooccur counts all events unless [train.rankings] window is set")
            ranking: dict[str, Any] = {}
            end_key = None
            for key, v in r.items():
                at = f"{where}.{key}"
                if key in ("type", "backfillType") or key in COMMENT_KEYS:
                    continue
                if key == "name":
                    self.drop(at, "cooccur's ranking fields are named popular, trending and hot; the "
                                  "backfill ranking is chosen by [query] backfill")
                elif key in ("eventNames", "indicatorNames"):
                    names = self.strings(at, v, False)
                    if names is not None:
                        ranking["events"] = names
                        self.carry(at, "[train.rankings] events")
                elif key == "duration":
                    window = self.duration(at, v)
                    if window is not None:
                        ranking["window"] = window
                        self.differ(at, "[train.rankings] window: counted back from the window's end, which is "
                                        "the newest event unless `end` is set (the UR: the training time)")
                elif key in ("offsetDate", "endDate"):
                    if end_key is not None:
                        if key == "offsetDate":  # what the UR's code read
                            self.drop(f"{where}.{end_key}", "offsetDate is given too, and is what the UR's "
                                                            "code used")
                            ranking.pop("end", None)
                        else:
                            self.drop(at, "offsetDate is given too, and is what the UR's code used")
                            continue
                    end = self.date(at, v)
                    if end is not None:
                        ranking["end"] = end
                        end_key = key
                        if key == "endDate":
                            self.differ(at, "[train.rankings] end: the UR documents endDate as the window's end, "
                                            "but its code (URAlgorithm.getRanksRDD) read offsetDate only")
                        else:
                            self.carry(at, "[train.rankings] end")
                else:
                    self.unknown(at, key, {"name", "type", "backfillType", "eventNames", "indicatorNames",
                                           "duration", "offsetDate", "endDate"})
            if ranking:
                self.c.train["rankings"] = ranking

    def duration(self, path: str, value: Any) -> str | None:
        """A UR duration ("3 days", a Scala Duration; UR <= 0.4: seconds) as cooccur's."""
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            seconds = float(value)
            text = f"{seconds / 86400:g} days" if seconds % 86400 == 0 else f"{seconds:g} seconds"
        elif isinstance(value, str):
            text = value.strip()
        else:
            self.drop(path, f"expected a duration such as \"3 days\", not {json.dumps(value)}")
            return None
        try:
            if parse_duration(text).total_seconds() <= 0:
                raise ValueError("a duration must be > 0")
        except ValueError as e:
            self.drop(path, str(e))
            return None
        return text

    def date(self, path: str, value: Any) -> str | None:
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
                return value
            except ValueError:
                pass
        self.drop(path, f"expected an ISO-8601 date, not {json.dumps(value)}")
        return None

    def min_events(self, path: str, value: Any) -> None:
        n = self.integer(path, value, 0)
        if n is None:
            return
        self.c.train["min_events_per_user"] = max(n, 1)
        self.carry(path, "[train] min_events_per_user" + (" (1: the UR counts only users with a primary "
                                                          "event even with 0)" if n < 1 else ""))

    # ---- datasource.params (PredictionIO) and Harness's own sections
    def datasource(self, ds: dict[str, Any], at: str) -> None:
        for key, value in ds.items():
            path = f"{at}.{key}"
            if key == "eventNames" or key in COMMENT_KEYS:
                continue
            if key == "name":
                self.drop(path, "a label of PredictionIO's data source; not used")
            elif key == "appName":
                self.drop(path, "a PredictionIO app: cooccur reads events from files or its event store "
                                "([events] path), one per config")
            elif key == "minEventsPerUser":
                self.min_events(path, value)
            elif key == "eventWindow":
                if not isinstance(value, dict):
                    self.drop(path, f"expected an object {{duration, ...}}, not {json.dumps(value)}")
                    continue
                for k, v in value.items():
                    if k == "duration":
                        self.retention(f"{path}.duration", v, "PredictionIO's eventWindow deletes older events "
                                                              "(all but $set) from the event store at training")
                    elif k == "removeDuplicates":
                        self.drop(f"{path}.{k}", "indicators count an interaction once however often it "
                                                 "repeats; the store keeps every event (rankings count them)")
                    elif k == "compressProperties":
                        self.drop(f"{path}.{k}", "cooccur keeps only the latest value of each item property "
                                                 "already")
                    elif k not in COMMENT_KEYS:
                        self.unknown(f"{path}.{k}", k, {"duration", "removeDuplicates", "compressProperties"})
            else:
                self.unknown(path, key, {"name", "appName", "eventNames", "eventWindow", "minEventsPerUser"})

    def harness_only(self, e: dict[str, Any]) -> None:
        dataset = e.get("dataset")
        if dataset is None:
            return
        if not isinstance(dataset, dict):
            self.drop("dataset", f"expected an object {{ttl}}, not {json.dumps(dataset)}")
            return
        for key, value in dataset.items():
            if key == "ttl":
                self.retention("dataset.ttl", value, "Harness drops indicator events older than the ttl")
            elif key not in COMMENT_KEYS:
                self.unknown(f"dataset.{key}", key, {"ttl"})

    def retention(self, path: str, value: Any, theirs: str) -> None:
        text = self.duration(path, value)
        if text is None:
            return
        days = parse_duration(text).total_seconds() / 86400
        actions = list(dict.fromkeys(self.actions + (self.c.train.get("rankings", {}).get("events") or [])))
        self.c.events["retention"] = {a: round(days, 6) for a in actions}
        self.differ(path, f"[events] retention = {days:g} days for each of {', '.join(actions)}: {theirs}; "
                          "cooccur prunes the event store (on `cooccur serve` or `cooccur events prune`); "
                          "models keep what they were trained on")

    # ---- sparkConf
    def spark(self, conf: Any) -> None:
        if conf is None:
            return
        if not isinstance(conf, dict):
            self.drop("sparkConf", f"expected an object, not {json.dumps(conf)}")
            return
        options: dict[str, str] = {}
        es: dict[str, Any] = {}
        for key, value in conf.items():
            path = f'sparkConf["{key}"]'
            if key in COMMENT_KEYS:
                continue
            text = (json.dumps(value) if isinstance(value, bool)
                    else str(value) if isinstance(value, str | int | float) else None)
            if text is None:
                self.drop(path, f"expected a string or number, not {json.dumps(value)}")
                continue
            if key in ("master", "spark.master"):
                self.c.train["spark_master"] = text
                self.carry(path, "[train] spark_master")
            elif key in MAHOUT_SPARK:
                self.drop(path, "Mahout's Kryo serialization; cooccur's Spark job exchanges Arrow batches and "
                                "needs none of it")
            elif key.startswith(("es.", "spark.es.")):
                es[key.removeprefix("spark.")] = (path, text)
            elif key.startswith("spark."):
                options[key] = text
                note = ""
                if key == "spark.executor.memory":
                    note = " (with the default local[*] master Spark runs in the driver: spark.driver.memory counts)"
                self.carry(path, f"[train] spark_options{note}")
            else:
                self.drop(path, "not a Spark setting")
        if options:
            self.c.train["spark_options"] = options
        self.elasticsearch(es)

    def elasticsearch(self, es: dict[str, tuple[str, str]]) -> None:
        nodes = es.pop("es.nodes", None)
        port = es.pop("es.port", None)
        ssl = es.pop("es.net.ssl", None)
        settings: dict[str, Any] = {}
        if nodes is not None:
            scheme = "https" if ssl is not None and ssl[1].lower() == "true" else "http"
            urls = []
            for host in (h.strip() for h in nodes[1].split(",")):
                if not host:
                    continue
                if "://" not in host:
                    has_port = re.search(r":\d+$", host) is not None
                    host = f"{scheme}://{host}" + ("" if has_port else f":{port[1] if port else ES_DEFAULT_PORT}")
                urls.append(host)
            if urls:
                settings["urls"] = urls
                self.c.index["backend"] = "elasticsearch"
                self.differ(nodes[0], "[index] backend = \"elasticsearch\" and [index.elasticsearch] urls: cooccur "
                                      "talks to the cluster over its REST API with the Python client; one shard "
                                      "per index by default, so scores match the embedded backend "
                                      "(docs/elasticsearch.md)")
                for extra in (port, ssl):
                    if extra is not None:
                        self.carry(extra[0], "[index.elasticsearch] urls")
        else:
            for extra in (port, ssl):
                if extra is not None:
                    self.drop(extra[0], "no es.nodes to go with it")
        for key, target in (("es.net.http.auth.user", "username"), ("es.net.http.auth.pass", "password")):
            given = es.pop(key, None)
            if given is not None:
                settings[target] = given[1]
                self.carry(given[0], f"[index.elasticsearch] {target}")
        for path, _ in es.values():
            self.drop(path, "an elasticsearch-hadoop (Spark connector) setting: cooccur indexes with the "
                            "Elasticsearch Python client ([index.elasticsearch])")
        if settings:
            self.c.index["elasticsearch"] = settings

    # ---- the result must load
    def check(self) -> None:
        """Build every settings dataclass from the result, as `cooccur -c` will."""
        t = dict(self.c.train)
        try:
            t["indicators"] = [IndicatorSettings(**i) for i in t.get("indicators", [])]
            if "rankings" in t:
                t["rankings"] = RankingSettings(**t["rankings"])
            TrainSettings(**t)
            i = dict(self.c.index)
            if "elasticsearch" in i:
                i["elasticsearch"] = ElasticsearchSettings(**i["elasticsearch"])
            IndexSettings(**i)
            QuerySettings(**self.c.query)
            EventSettings(**self.c.events)
        except (TypeError, ValueError, SettingsError) as e:
            raise self.fail("", f"the converted config does not load ({e}): please report this with the file",
                            hint="the parameters listed so far convert; edit the rest by hand") from None


# --------------------------------------------------------------------------- TOML
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


TABLE_ARRAYS = {"indicators"}
"""Lists of tables written as [[arrays of tables]]; others (rules) as inline tables."""


def dump_toml(sections: dict[str, dict[str, Any]]) -> str:
    """The config as TOML: plain keys first in each table, then its arrays of tables and
    sub-tables (what tomllib reads back as the same dict)."""
    lines: list[str] = []

    def _is_table_array(k: str, v: Any) -> bool:
        return k in TABLE_ARRAYS and isinstance(v, list) and all(isinstance(e, dict) for e in v)

    def table(name: str, values: dict[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not _is_table(v) and not _is_table_array(k, v)}
        if plain or not values:
            lines.extend(["", f"[{name}]"])
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
        for k, v in values.items():
            if _is_table_array(k, v):
                for entry in v:
                    lines.extend(["", f"[[{name}.{_key(k)}]]"])
                    lines.extend(f"{_key(ek)} = {_value(ev)}" for ek, ev in entry.items())
        for k, v in values.items():
            if _is_table(v):
                table(f"{name}.{_key(k)}", v)

    for name, values in sections.items():
        table(_key(name), values)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf") if not math.isnan(v) else "nan"
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(e) for e in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(e)}" for k, e in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
