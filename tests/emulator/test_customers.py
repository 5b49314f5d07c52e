"""The customers API: create, get, list, replace (PUT) and delete, with Amberflo's answers."""

from __future__ import annotations

import time

import pytest

from amberflo_sync.emulator import stripe_id_for


def customer(customer_id: str = "c-1", **fields) -> dict:
    body = {"customerId": customer_id, "customerName": "John Doe", **fields}
    return {key: value for key, value in body.items() if value is not None}


@pytest.fixture
def customers_url(emulator) -> str:
    return f"{emulator.url}/customers"


def test_created_customer_is_returned_with_times(emulator, session, customers_url):
    response = session.post(customers_url, json=customer(traits={"plan": "pro"}))
    body = response.json()
    assert response.status_code == 200
    assert body["customerId"] == "c-1" and body["customerName"] == "John Doe"
    assert body["traits"] == {"plan": "pro"}
    assert isinstance(body["createTime"], int) and body["createTime"] == body["updateTime"]


def test_get_by_query_returns_the_customer(emulator, session, customers_url):
    created = session.post(customers_url, json=customer(customerEmail="j@example.com")).json()
    response = session.get(f"{customers_url}/", params={"customerId": "c-1"})
    assert response.status_code == 200 and response.json() == created


def test_get_by_path_returns_the_customer(emulator, session, customers_url):
    created = session.post(customers_url, json=customer("user 7")).json()
    assert session.get(f"{customers_url}/user%207").json() == created


@pytest.mark.parametrize("form", ["query", "path"])
def test_missing_customer_is_200_with_an_empty_object(emulator, session, customers_url, form):
    if form == "query":
        response = session.get(f"{customers_url}/", params={"customerId": "ghost"})
    else:
        response = session.get(f"{customers_url}/ghost")
    assert response.status_code == 200 and response.json() == {}


@pytest.mark.parametrize("path", ["/customers", "/customers/"])
def test_list_returns_every_customer(emulator, session, path):
    session.post(f"{emulator.url}/customers", json=customer("a"))
    session.post(f"{emulator.url}/customers", json=customer("b"))
    listed = session.get(f"{emulator.url}{path}").json()
    assert [c["customerId"] for c in listed] == ["a", "b"]


def test_creating_an_existing_customer_says_already_exists(emulator, session, customers_url):
    session.post(customers_url, json=customer())
    response = session.post(customers_url, json=customer(customerName="Other"))
    assert response.status_code in (400, 409)
    assert "already exists" in response.json()["error"]
    assert emulator.customers()["c-1"]["customerName"] == "John Doe"


def test_stripe_creation_adds_a_deterministic_stripe_id(emulator, session, customers_url):
    response = session.post(
        customers_url, params={"autoCreateCustomerInStripe": "true"}, json=customer(traits={"a": "b"})
    )
    traits = response.json()["traits"]
    assert traits == {"a": "b", "stripeId": stripe_id_for("c-1")}
    assert traits["stripeId"].startswith("cus_") and stripe_id_for("c-1") == stripe_id_for("c-1")


def test_plain_creation_adds_no_stripe_id(emulator, session, customers_url):
    assert "stripeId" not in session.post(customers_url, json=customer()).json()["traits"]


def test_put_replaces_the_whole_customer(emulator, session, customers_url):
    session.post(
        customers_url,
        params={"autoCreateCustomerInStripe": "true"},
        json=customer(customerEmail="j@example.com", traits={"plan": "pro", "seats": "3"}, test=True),
    )
    response = session.put(customers_url, json=customer(customerName="Jane", traits={"plan": "free"}))
    stored = emulator.customers()["c-1"]
    assert response.status_code == 200 and response.json() == stored
    assert stored["customerName"] == "Jane" and stored["traits"] == {"plan": "free"}
    assert "customerEmail" not in stored and "test" not in stored  # gone, stripeId included


def test_put_keeps_create_time_and_moves_update_time(emulator, session, customers_url):
    created = session.post(customers_url, json=customer()).json()
    time.sleep(0.002)
    replaced = session.put(customers_url, json=customer(customerName="Jane")).json()
    assert replaced["createTime"] == created["createTime"]
    assert replaced["updateTime"] > created["updateTime"]


def test_put_on_a_missing_customer_says_not_found_and_creates_nothing(emulator, session, customers_url):
    response = session.put(customers_url, json=customer("ghost"))
    assert response.status_code == 404 and "not found" in response.json()["error"]
    assert emulator.customers() == {}


def test_put_by_path_must_match_the_body(emulator, session, customers_url):
    session.post(customers_url, json=customer())
    response = session.put(f"{customers_url}/other", json=customer())
    assert response.status_code == 400 and "customerId" in response.json()["error"]


def test_delete_removes_the_customer(emulator, session, customers_url):
    session.post(customers_url, json=customer())
    assert session.delete(f"{customers_url}/c-1").status_code == 200
    assert session.get(f"{customers_url}/c-1").json() == {}
    assert session.delete(f"{customers_url}/c-1").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customerName": "x"}, "customerId"),
        ({"customerId": "", "customerName": "x"}, "customerId"),
        ({"customerId": "c"}, "customerName"),
        ({"customerId": "c", "customerName": 5}, "customerName"),
        ({"customerId": "c", "customerName": "x", "customerEmail": 5}, "customerEmail"),
        ({"customerId": "c", "customerName": "x", "traits": ["a"]}, "traits"),
        ({"customerId": "c", "customerName": "x", "traits": {"plan": 3}}, "traits.plan"),
        ({"customerId": "c", "customerName": "x", "traits": {"plan": ""}}, "traits.plan"),
        ({"customerId": "c", "customerName": "x", "traits": {"url": "a/b"}}, "traits.url"),
        ({"customerId": "c", "customerName": "x", "enabled": "yes"}, "enabled"),
        ({"customerId": "c", "customerName": "x", "test": 1}, "test"),
        ({"customerId": "c", "customerName": "x", "address": "Main St"}, "address"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_customer_is_400_naming_the_field(emulator, session, customers_url, body, field):
    response = session.post(customers_url, json=body)
    assert response.status_code == 400
    assert f"field '{field}'" in response.json()["error"]
    assert emulator.customers() == {} and emulator.stats()["rejected_requests"] == 1


def test_optional_fields_are_kept(emulator, session, customers_url):
    body = customer(customerEmail="j@example.com", enabled=True, test=False, address={"city": "Paris"})
    stored = session.post(customers_url, json=body).json()
    assert {k: stored[k] for k in body} == body


def test_admin_endpoint_lists_customers_by_id(emulator, session, anonymous, customers_url):
    session.post(customers_url, json=customer("a"))
    listed = anonymous.get(f"{emulator.url}/__emulator/customers").json()
    assert list(listed) == ["a"] and listed == emulator.customers()


def test_customer_counters(emulator, session, customers_url):
    session.post(customers_url, json=customer())
    session.get(f"{customers_url}/c-1")
    session.put(customers_url, json=customer())
    session.delete(f"{customers_url}/c-1")
    stats = emulator.stats()
    assert (stats["customer_posts"], stats["customer_gets"]) == (1, 1)
    assert (stats["customer_puts"], stats["customer_deletes"]) == (1, 1)
    assert stats["requests"] == 4
