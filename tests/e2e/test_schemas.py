"""Event schemas and versions (ops 29–38)."""
import json

import pytest
from huaweicloudsdkeg.v1 import (
    CreateEventSchemaRequest, CreateEventSchemaVersionRequest, CustomizeSchemaCreateReq,
    CustomizeSchemaUpdateReq, CustomizeSchemaVersionCreateReq, DeleteEventSchemaRequest,
    DeleteEventSchemaVersionRequest, DiscoverEventSchemaFromDataRequest, ListEventSchemaRequest,
    ListEventSchemaVersionsRequest, ShowDetailOfEventSchemaRequest,
    ShowDetailOfEventSchemaVersionRequest, UpdateEventSchemaRequest,
)

from eglib import TIME_RE, UUID_RE, assert_eg_error, assert_request_id, body_of, sdk_err, uniq

DEF1 = json.dumps({"type": "object", "properties": {"id": {"type": "string"}},
                   "required": ["id"]})
DEF2 = json.dumps({"$schema": "http://json-schema.org/draft-06/schema#", "type": "object",
                   "properties": {"id": {"type": "string"}, "n": {"type": "integer"}}})
DEF3 = json.dumps({"type": ["string", "null"]})
BAD_DEFS = ["not json {", '{"type": 5}', '{"required": "id"}', "[1, 2]", ""]


@pytest.fixture
def schemas(eg_a):
    """Creates schemas through the SDK and deletes the survivors afterwards."""
    made = []

    def create(name=None, definition=DEF1, **kw):
        kw.setdefault("compatibility", "NONE")
        r = eg_a.create_event_schema(CreateEventSchemaRequest(body=CustomizeSchemaCreateReq(
            name=name or uniq("sch"), definition=definition, **kw)))
        made.append(r.id)
        return r

    yield create
    for sid in made:
        try:
            eg_a.delete_event_schema(DeleteEventSchemaRequest(schema_id=sid))
        except Exception:  # already deleted by the test
            pass


def show(eg, sid):
    return eg.show_detail_of_event_schema(ShowDetailOfEventSchemaRequest(schema_id=sid))


def add_version(eg, sid, definition):
    return eg.create_event_schema_version(CreateEventSchemaVersionRequest(
        schema_id=sid, body=CustomizeSchemaVersionCreateReq(definition=definition)))


def test_schema_crud(eg_a, schemas):
    name = uniq("sch")
    c = schemas(name=name, description="first", compatibility="BACKWARD")
    assert c.status_code == 200
    assert_request_id(c.x_request_id)
    assert UUID_RE.match(c.id)
    assert (c.name, c.description, c.compatibility) == (name, "first", "BACKWARD")
    assert c.provider_type == "CUSTOM" and c.format == "JSON_SCHEMA_DRAFT_6"
    assert c.number_of_versions == 1 and c.version == 1 and c.definition == DEF1
    assert TIME_RE.match(c.created_time) and TIME_RE.match(c.updated_time)

    s = show(eg_a, c.id)
    assert (s.id, s.name, s.description, s.compatibility, s.version, s.definition) == \
        (c.id, name, "first", "BACKWARD", 1, DEF1)
    assert s.created_time == c.created_time

    u = eg_a.update_event_schema(UpdateEventSchemaRequest(schema_id=c.id, body=CustomizeSchemaUpdateReq(
        description="second")))
    assert u.id == c.id and u.description == "second" and u.compatibility == "BACKWARD"
    assert u.updated_time >= c.updated_time and u.created_time == c.created_time
    u = eg_a.update_event_schema(UpdateEventSchemaRequest(schema_id=c.id, body=CustomizeSchemaUpdateReq(
        compatibility="FORWARD")))
    assert u.description == "second" and u.compatibility == "FORWARD"
    assert show(eg_a, c.id).compatibility == "FORWARD"

    lst = eg_a.list_event_schema(ListEventSchemaRequest(name=name))
    assert lst.total == 1 and lst.size == 1
    it = lst.items[0]
    assert (it.id, it.name, it.description, it.compatibility, it.provider_type, it.format,
            it.number_of_versions) == (c.id, name, "second", "FORWARD", "CUSTOM",
                                       "JSON_SCHEMA_DRAFT_6", 1)
    assert it.event_type_id == "" and it.event_source_name == ""
    assert "definition" not in body_of(lst)["items"][0]
    assert lst.items[0].id in [i.id for i in eg_a.list_event_schema(
        ListEventSchemaRequest(provider_type="CUSTOM", name=name)).items]
    assert eg_a.list_event_schema(ListEventSchemaRequest(provider_type="OFFICIAL",
                                                         name=name)).total == 0

    d = eg_a.delete_event_schema(DeleteEventSchemaRequest(schema_id=c.id))
    assert d.status_code == 204
    assert_eg_error(sdk_err(show, eg_a, c.id), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.delete_event_schema, DeleteEventSchemaRequest(schema_id=c.id)),
                    404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.list_event_schema_versions,
                            ListEventSchemaVersionsRequest(schema_id=c.id)), 404, "EG.00514001")
    assert eg_a.list_event_schema(ListEventSchemaRequest(name=name)).total == 0
    # The name is free again, with a fresh version 1.
    again = schemas(name=name)
    assert again.id != c.id and again.version == 1


def test_schema_paging_and_fuzzy_name(eg_a, schemas):
    tag = uniq("pg")
    ids = [schemas(name=f"{tag}-{i}").id for i in range(5)]
    schemas(name=uniq("other"))
    r = eg_a.list_event_schema(ListEventSchemaRequest(fuzzy_name=tag.upper(), limit=2))
    assert r.total == 5 and r.size == 2
    seen = [i.id for i in r.items]
    r = eg_a.list_event_schema(ListEventSchemaRequest(fuzzy_name=tag, limit=2, offset=2))
    seen += [i.id for i in r.items]
    r = eg_a.list_event_schema(ListEventSchemaRequest(fuzzy_name=tag, limit=2, offset=4))
    assert r.size == 1 and r.total == 5
    seen += [i.id for i in r.items]
    assert sorted(seen) == sorted(ids)
    # Default order: newest first; created_time ascending reverses it.
    asc = eg_a.list_event_schema(ListEventSchemaRequest(fuzzy_name=tag, sort="created_time:ASC"))
    desc = eg_a.list_event_schema(ListEventSchemaRequest(fuzzy_name=tag))
    assert [i.id for i in asc.items] == list(reversed([i.id for i in desc.items]))
    assert_eg_error(sdk_err(eg_a.list_event_schema, ListEventSchemaRequest(limit=0)),
                    400, "EG.00513000")


def test_schema_is_project_scoped(eg_a, eg_b, schemas):
    c = schemas()
    assert_eg_error(sdk_err(show, eg_b, c.id), 404, "EG.00514001")
    assert eg_b.list_event_schema(ListEventSchemaRequest(name=c.name)).total == 0


def test_schema_create_validation(eg_a, schemas):
    name = uniq("sch")
    base = {"name": name, "compatibility": "NONE", "definition": DEF1}
    bad_bodies = [
        {**base, "definition": d} for d in BAD_DEFS
    ] + [
        {k: v for k, v in base.items() if k != "definition"},
        {k: v for k, v in base.items() if k != "compatibility"},
        {**base, "compatibility": "x" * 33},
        {**base, "name": "-bad"},
        {**base, "format": "XML"},
        {**base, "description": "d" * 256},
    ]
    for body in bad_bodies:
        e = sdk_err(eg_a.create_event_schema, CreateEventSchemaRequest(body=body))
        assert_eg_error(e, 400, "EG.00513000")
    assert "definition" in sdk_err(eg_a.create_event_schema, CreateEventSchemaRequest(
        body={**base, "definition": '{"type": 5}'})).error_msg
    # Nothing was created.
    assert eg_a.list_event_schema(ListEventSchemaRequest(name=name)).total == 0
    c = schemas(name=name)
    e = sdk_err(eg_a.create_event_schema, CreateEventSchemaRequest(body=base))
    assert_eg_error(e, 400, "EG.00513001")
    assert eg_a.list_event_schema(ListEventSchemaRequest(name=name)).total == 1
    assert show(eg_a, c.id).number_of_versions == 1

    e = sdk_err(eg_a.update_event_schema, UpdateEventSchemaRequest(
        schema_id=c.id, body=CustomizeSchemaUpdateReq(compatibility="x" * 33)))
    assert_eg_error(e, 400, "EG.00513000")
    assert_eg_error(sdk_err(eg_a.update_event_schema, UpdateEventSchemaRequest(
        schema_id="00000000-0000-4000-8000-000000000000",
        body=CustomizeSchemaUpdateReq(description="x"))), 404, "EG.00514001")


def test_schema_versions(eg_a, schemas):
    c = schemas(definition=DEF1)
    v2 = add_version(eg_a, c.id, DEF2)
    assert v2.status_code == 200
    assert_request_id(v2.x_request_id)
    assert UUID_RE.match(v2.id) and v2.schema_id == c.id and v2.version == 2
    assert v2.format == "JSON_SCHEMA_DRAFT_6" and v2.definition == DEF2
    assert TIME_RE.match(v2.created_time)
    v3 = add_version(eg_a, c.id, DEF3)
    assert v3.version == 3

    s = show(eg_a, c.id)
    assert s.version == 3 and s.number_of_versions == 3 and s.definition == DEF3

    lst = eg_a.list_event_schema_versions(ListEventSchemaVersionsRequest(schema_id=c.id))
    assert lst.total == 3 and lst.size == 3
    assert [i.version for i in lst.items] == [3, 2, 1]
    assert set(body_of(lst)["items"][0]) == {"id", "version", "created_time", "updated_time"}
    asc = eg_a.list_event_schema_versions(ListEventSchemaVersionsRequest(
        schema_id=c.id, sort="created_time:ASC"))
    assert [i.version for i in asc.items] == [1, 2, 3]
    page = eg_a.list_event_schema_versions(ListEventSchemaVersionsRequest(
        schema_id=c.id, limit=1, offset=1))
    assert page.total == 3 and page.size == 1 and page.items[0].version == 2
    one = eg_a.list_event_schema_versions(ListEventSchemaVersionsRequest(schema_id=c.id,
                                                                         version="2"))
    assert one.total == 1 and one.items[0].id == v2.id
    none = eg_a.list_event_schema_versions(ListEventSchemaVersionsRequest(schema_id=c.id,
                                                                          version="9"))
    assert none.total == 0 and none.items == []

    sv = eg_a.show_detail_of_event_schema_version(ShowDetailOfEventSchemaVersionRequest(
        schema_id=c.id, version=1))
    assert sv.version == 1 and sv.schema_id == c.id and sv.definition == DEF1
    assert_eg_error(sdk_err(eg_a.show_detail_of_event_schema_version,
                            ShowDetailOfEventSchemaVersionRequest(schema_id=c.id, version=7)),
                    404, "EG.00514001")

    # Deleting the current version makes the previous one current.
    d = eg_a.delete_event_schema_version(DeleteEventSchemaVersionRequest(schema_id=c.id,
                                                                         version=3))
    assert d.status_code == 204
    s = show(eg_a, c.id)
    assert s.version == 2 and s.number_of_versions == 2 and s.definition == DEF2
    assert_eg_error(sdk_err(eg_a.show_detail_of_event_schema_version,
                            ShowDetailOfEventSchemaVersionRequest(schema_id=c.id, version=3)),
                    404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.delete_event_schema_version,
                            DeleteEventSchemaVersionRequest(schema_id=c.id, version=3)),
                    404, "EG.00514001")
    eg_a.delete_event_schema_version(DeleteEventSchemaVersionRequest(schema_id=c.id, version=1))
    # The last remaining version cannot go.
    e = sdk_err(eg_a.delete_event_schema_version,
                DeleteEventSchemaVersionRequest(schema_id=c.id, version=2))
    assert_eg_error(e, 409, "EG.00514002")
    s = show(eg_a, c.id)
    assert s.version == 2 and s.number_of_versions == 1
    # Numbering continues from the highest existing version.
    assert add_version(eg_a, c.id, DEF1).version == 3


def test_schema_version_validation(eg_a, raw_a, schemas):
    c = schemas()
    for d in BAD_DEFS:
        e = sdk_err(eg_a.create_event_schema_version, CreateEventSchemaVersionRequest(
            schema_id=c.id, body=CustomizeSchemaVersionCreateReq(definition=d)))
        assert_eg_error(e, 400, "EG.00513000")
    e = sdk_err(eg_a.create_event_schema_version, CreateEventSchemaVersionRequest(
        schema_id=c.id, body={}))
    assert_eg_error(e, 400, "EG.00513000")
    # Nothing changed.
    s = show(eg_a, c.id)
    assert s.version == 1 and s.number_of_versions == 1 and s.definition == DEF1
    assert eg_a.list_event_schema_versions(
        ListEventSchemaVersionsRequest(schema_id=c.id)).total == 1

    for m in ("GET", "DELETE"):
        r = raw_a.call(m, f"/v1/{{p}}/schemas/{c.id}/versions/abc")
        assert_eg_error(r, 400, "EG.00513000")
    r = raw_a.call("GET", f"/v1/{{p}}/schemas/{c.id}/versions", query={"version": "x"})
    assert_eg_error(r, 400, "EG.00513000")
    missing = "00000000-0000-4000-8000-000000000000"
    assert_eg_error(sdk_err(add_version, eg_a, missing, DEF1), 404, "EG.00514001")
    assert_eg_error(sdk_err(eg_a.show_detail_of_event_schema_version,
                            ShowDetailOfEventSchemaVersionRequest(schema_id=missing, version=1)),
                    404, "EG.00514001")


def test_delete_schema_removes_versions(eg_a, schemas):
    c = schemas()
    add_version(eg_a, c.id, DEF2)
    eg_a.delete_event_schema(DeleteEventSchemaRequest(schema_id=c.id))
    assert_eg_error(sdk_err(eg_a.show_detail_of_event_schema_version,
                            ShowDetailOfEventSchemaVersionRequest(schema_id=c.id, version=2)),
                    404, "EG.00514001")


def test_discover_schema_from_data(eg_a):
    event = {"id": "e1", "n": 3, "x": 1.5, "ok": True, "none": None,
             "data": {"tags": ["a", "b"], "items": [{"k": 1, "m": "z"}, {"k": 2.5}]}}
    r = eg_a.discover_event_schema_from_data(DiscoverEventSchemaFromDataRequest(
        body={"event": json.dumps(event), "format": "JSON_SCHEMA_DRAFT_6"}))
    assert r.status_code == 200
    assert r.total == 1 and r.size == 1
    assert r.items[0].format == "JSON_SCHEMA_DRAFT_6"
    raw = body_of(r)["items"][0]
    schema = json.loads(raw["definition"])
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    assert schema["type"] == "object"
    assert schema["required"] == ["id", "n", "x", "ok", "none", "data"]
    p = schema["properties"]
    assert [p[k]["type"] for k in ("id", "n", "x", "ok", "none")] == \
        ["string", "integer", "number", "boolean", "null"]
    data = p["data"]
    assert data["type"] == "object" and data["required"] == ["tags", "items"]
    assert data["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    items = data["properties"]["items"]["items"]
    assert items["type"] == "object" and items["required"] == ["k"]
    assert items["properties"]["k"]["type"] == "number"
    # The inferred text is accepted as a definition.
    d = eg_a.discover_event_schema_from_data(DiscoverEventSchemaFromDataRequest(
        body={"event": '{"a": 1}'}))
    assert json.loads(body_of(d)["items"][0]["definition"])["properties"]["a"]["type"] == "integer"


def test_discover_validation(eg_a, schemas):
    for body in [{"event": "{not json"}, {"event": {"a": 1}},
                 {"event": json.dumps({"a": "x" * 1100})}, {"event": "{}", "format": "XML"}]:
        e = sdk_err(eg_a.discover_event_schema_from_data,
                    DiscoverEventSchemaFromDataRequest(body=body))
        assert_eg_error(e, 400, "EG.00513000")
    # Without a sample event there is nothing to discover.
    d = eg_a.discover_event_schema_from_data(DiscoverEventSchemaFromDataRequest(body={}))
    assert (d.total, d.size, d.items) == (0, 0, [])
    # A discovered schema can be stored as is.
    d = eg_a.discover_event_schema_from_data(DiscoverEventSchemaFromDataRequest(
        body={"event": '{"id": "1", "list": [1, 2]}'}))
    definition = body_of(d)["items"][0]["definition"]
    c = schemas(definition=definition)
    assert show(eg_a, c.id).definition == definition


def test_openapi_format(eg_a, raw_a, schemas):
    """OPENAPI_3_0 (the format of the reference's examples) is stored and echoed; without a
    `$schema` its definitions are checked as OpenAPI 3.0 Schema Objects (the draft-04 meta-schema:
    boolean exclusiveMinimum, no boolean schemas), draft-06 ones as draft-06."""
    d4 = json.dumps({"type": "number", "minimum": 1, "exclusiveMinimum": True, "nullable": True})
    d6 = json.dumps({"type": "number", "exclusiveMinimum": 1})
    c = schemas(definition=d4, format="OPENAPI_3_0")
    assert c.format == "OPENAPI_3_0" and show(eg_a, c.id).format == "OPENAPI_3_0"
    for definition, fmt in ((d6, "OPENAPI_3_0"), ("true", "OPENAPI_3_0"),
                            (d4, "JSON_SCHEMA_DRAFT_6")):
        r = raw_a.call("POST", "/v1/{p}/schemas", body={
            "name": uniq("sch"), "compatibility": "NONE", "format": fmt,
            "definition": definition})
        assert_eg_error(r, 400, "EG.00513000")
    # Versions follow the schema's format.
    r = raw_a.call("POST", f"/v1/{{p}}/schemas/{c.id}/versions", body={"definition": d6})
    assert_eg_error(r, 400, "EG.00513000")
    r = raw_a.call("POST", f"/v1/{{p}}/schemas/{c.id}/versions", body={"definition": d4})
    assert r.status == 200 and r.json()["format"] == "OPENAPI_3_0", r

    # Discovery in OpenAPI form: one type per schema, `nullable` instead of a null type.
    event = {"id": "e1", "none": None, "mixed": [1, "a"]}
    r = raw_a.call("POST", "/v1/{p}/schema-discover",
                   body={"event": json.dumps(event), "format": "OPENAPI_3_0"})
    assert r.status == 200, r
    item = r.json()["items"][0]
    assert item["format"] == "OPENAPI_3_0"
    inferred = json.loads(item["definition"])
    assert "$schema" not in inferred
    assert inferred["properties"]["none"] == {"nullable": True}
    assert inferred["properties"]["mixed"]["items"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}]}
    s = schemas(definition=item["definition"], format="OPENAPI_3_0")
    assert s.definition == item["definition"]

