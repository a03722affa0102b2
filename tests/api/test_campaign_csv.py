"""CSV uploads of form letters over the API: files as people have them, caps, the column."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from sendas.context import AppContext
from tests.api.test_campaigns import count_messages, make_alias, message_rows
from tests.conftest import Person

EXCEL = (
    "E-mail Address;First Name;Company\r\n"
    "zoe@example.org;Zoë;Acme\r\n"
    "nobody;No;Body\r\n"
    "jose@example.org;José;Café Olé\r\n"
)


def post_csv(client: TestClient, who: Person, data: bytes, **form: Any) -> Any:
    body = {"subject": "Hi {{ first_name }}", "text": "Dear {{ first_name }} of {{ company }}"}
    files = {"file": ("list.csv", data, "text/csv")}
    return client.post("/api/campaigns", data={**body, **form}, files=files, headers=who.headers)


def test_excel_csv_in_windows_1252_queues_with_merge_fields(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    make_alias(client, alice)
    r = post_csv(client, alice, EXCEL.encode("cp1252"), skip_invalid="true")
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["total"], body["invalid_count"]) == (2, 1)
    assert [(b["line"], b["email"]) for b in body["invalid_lines"]] == [(3, "nobody")]
    rows = message_rows(ctx)
    assert [m.to_addrs[0] for m in rows] == ["zoe@example.org", "jose@example.org"]
    assert rows[1].merge_fields == {"first_name": "José", "company": "Café Olé"}


def test_bad_lines_refuse_the_file_with_their_numbers(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    make_alias(client, alice)
    r = post_csv(client, alice, b"\xef\xbb\xbf" + EXCEL.encode())
    assert r.status_code == 422
    assert [e["msg"].split(":")[0] for e in r.json()["detail"]] == ["line 3"]
    assert count_messages(ctx) == 0


def test_the_address_column_can_be_chosen(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    make_alias(client, alice)
    data = b"first_name\tcompany\tWork\nAnn\tAcme\tann@example.org\n"
    r = post_csv(client, alice, data)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    assert "no column is named like an email address" in r.json()["detail"][0]["msg"]
    r = post_csv(client, alice, data, email_column="Nope")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "email_column"]
    r = post_csv(client, alice, data, email_column="work")
    assert r.status_code == 202, r.text
    assert message_rows(ctx)[0].merge_fields == {"first_name": "Ann", "company": "Acme"}


def test_size_and_row_caps_answer_413_and_queue_nothing(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    make_alias(client, alice)
    data = ("email,first_name,company\n" + "a@example.org,A,B\n" * 5).encode()
    ctx.settings.csv_max_rows = 4
    r = post_csv(client, alice, data)
    assert r.status_code == 413
    assert r.json()["detail"] == [
        {
            "loc": ["body", "file"],
            "msg": "the file has more than 4 recipients (the limit is SENDAS_CSV_MAX_ROWS)",
            "type": "too_large",
        }
    ]
    ctx.settings.csv_max_rows = 5
    ctx.settings.csv_max_bytes = len(data) - 1
    r = post_csv(client, alice, data)
    assert r.status_code == 413
    assert "SENDAS_CSV_MAX_BYTES" in r.json()["detail"][0]["msg"]
    assert count_messages(ctx) == 0
    ctx.settings.csv_max_bytes = len(data)
    assert post_csv(client, alice, data).status_code == 202
    assert count_messages(ctx) == 5
