"""The emulator's usage API over real HTTP: aggregates, batches, raw events, cancellations, drift faults."""

from __future__ import annotations

from amberflo_sync.emulator import FaultConfig
from tests.emulator.helpers import meter_record, post_json

HOUR = 3600
T0 = 1_700_000_000 - 1_700_000_000 % 86_400  # a UTC midnight, in seconds


def rec(i: int, customer: str, hour: int, value: float = 1.0, meter: str = "ApiCalls", **more):
    return meter_record(i, customerId=customer, meterApiName=meter, meterValue=value,
                        meterTimeInMillis=(T0 + hour * HOUR + 60 + i) * 1000, **more)


def usage(session, emulator, path="/usage", **query):
    body = {"meterApiName": "ApiCalls", "aggregation": "SUM", "timeGroupingInterval": "HOUR",
            "timeRange": {"startTimeInSeconds": T0, "endTimeInSeconds": T0 + 3 * HOUR},
            "groupBy": ["customerId"], **query}
    response = post_json(session, f"{emulator.url}{path}", body)
    assert response.status_code == 200, response.text
    return response.json()


def cells(answer):
    return {(m["group"]["groupInfo"]["customerId"], v["secondsSinceEpochUtc"]): v["value"]
            for m in answer["clientMeters"] for v in m["values"]}


def ingest(session, emulator, records):
    response = post_json(session, f"{emulator.url}/ingest", records, gzipped=True)
    assert response.status_code == 200, response.text


def test_usage_aggregates_per_customer_and_hour_after_de_duplication(emulator, session):
    records = [rec(0, "a", 0, 2.0), rec(1, "a", 0, 3.0), rec(2, "b", 1, 5.0), rec(3, "a", 2, 7.0),
               rec(4, "a", 5, 100.0), rec(5, "b", 1, 1.0, meter="Other")]
    ingest(session, emulator, records)
    ingest(session, emulator, records[:2])  # re-sent identical bytes: dropped
    answer = usage(session, emulator)
    assert answer["secondsSinceEpochIntervals"] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert cells(answer) == {("a", T0): 5.0, ("a", T0 + HOUR): 0.0, ("a", T0 + 2 * HOUR): 7.0,
                             ("b", T0): 0.0, ("b", T0 + HOUR): 5.0, ("b", T0 + 2 * HOUR): 0.0}
    assert [m["groupValue"] for m in answer["clientMeters"]] == [12.0, 5.0]
    counts = cells(usage(session, emulator, aggregation="COUNT"))
    assert counts[("a", T0)] == 2 and counts[("b", T0 + HOUR)] == 1
    assert cells(usage(session, emulator, aggregation="MAX"))[("a", T0)] == 3.0
    assert cells(usage(session, emulator, aggregation="MIN"))[("a", T0)] == 2.0
    sparse = cells(usage(session, emulator, path="/usage/sparse"))
    assert sparse == {("a", T0): 5.0, ("a", T0 + 2 * HOUR): 7.0, ("b", T0 + HOUR): 5.0}
    daily = usage(session, emulator, timeGroupingInterval="DAY")
    assert daily["secondsSinceEpochIntervals"] == [T0] and cells(daily) == {("a", T0): 12.0, ("b", T0): 5.0}


def test_filter_take_and_batch(emulator, session):
    ingest(session, emulator, [rec(0, "a", 0, 2.0), rec(1, "b", 0, 3.0), rec(2, "c", 0, 9.0),
                               rec(3, "a", 0, 4.0, meter="Other")])
    only_a = usage(session, emulator, filter={"customerId": ["a"]})
    assert [m["group"]["groupInfo"]["customerId"] for m in only_a["clientMeters"]] == ["a"]
    top = usage(session, emulator, take={"limit": 2, "isAscending": False})
    assert [m["group"]["groupInfo"]["customerId"] for m in top["clientMeters"]] == ["c", "b"]
    bottom = usage(session, emulator, take={"limit": 1, "isAscending": True})
    assert [m["group"]["groupInfo"]["customerId"] for m in bottom["clientMeters"]] == ["a"]
    base = {"aggregation": "SUM", "timeGroupingInterval": "HOUR", "groupBy": ["customerId"],
            "timeRange": {"startTimeInSeconds": T0, "endTimeInSeconds": T0 + HOUR}}
    response = post_json(session, f"{emulator.url}/usage/batch",
                         [{**base, "meterApiName": "ApiCalls"}, {**base, "meterApiName": "Other", "aggregation": "COUNT"}])
    assert response.status_code == 200
    first, second = response.json()
    assert cells(first) == {("a", T0): 2.0, ("b", T0): 3.0, ("c", T0): 9.0}
    assert cells(second) == {("a", T0): 1.0}
    bad = post_json(session, f"{emulator.url}/usage", {**base, "meterApiName": "x", "aggregation": "AVG"})
    assert bad.status_code == 400 and "aggregation" in bad.json()["error"]
    assert emulator.stats()["usage_requests"] == 5


def test_events_are_paged_and_filtered(emulator, session):
    ingest(session, emulator, [rec(i, "a" if i % 2 else "b", 0) for i in range(7)])
    seen, token, pages = [], None, 0
    while True:
        params = {"meterApiName": "ApiCalls", "customerId": "a", "startTimeInSeconds": T0,
                  "endTimeInSeconds": T0 + HOUR, "pageSize": 2}
        if token:
            params["nextPageToken"] = token
        page = session.get(f"{emulator.url}/usage/events", params=params).json()
        assert page["columns"][:2] == ["uniqueId", "customerId"]
        seen += [row[0] for row in page["rows"]]
        pages += 1
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == ["m-1", "m-3", "m-5"] and pages == 2
    bad = session.get(f"{emulator.url}/usage/events", params={"meterApiName": "ApiCalls", "nextPageToken": "zzz"})
    assert bad.status_code == 400


def test_cancellation_record_cancels_the_record_it_repeats(emulator, session):
    original = rec(0, "a", 0, 2.0)
    other_version = rec(0, "a", 0, 2.0, dimensions={"region": "eu"})  # same uniqueId, other bytes
    ingest(session, emulator, [original, other_version, rec(1, "a", 0, 3.0)])
    assert cells(usage(session, emulator))[("a", T0)] == 7.0
    cancel = {**other_version, "dimensions": {**other_version["dimensions"],
                                              "aflo.cancel_previous_resource_event": "true"}}
    ingest(session, emulator, [cancel])
    assert cells(usage(session, emulator))[("a", T0)] == 5.0
    assert emulator.stats()["cancelled"] == 1
    assert sorted(r["dimensions"].get("region") for r in emulator.records()) == ["us-west-2", "us-west-2"]
    ingest(session, emulator, [cancel])  # nothing left that it repeats exactly: the other version goes
    assert cells(usage(session, emulator))[("a", T0)] == 3.0


def test_drift_faults_lose_and_double_records_and_say_which(emulator, session):
    emulator.set_faults(FaultConfig(rate_lose=0.2, rate_double=0.2, seed=3))
    records = [rec(i, "a", 0) for i in range(50)]
    ingest(session, emulator, records)
    drift = session.get(f"{emulator.url}/__emulator/drift").json()
    lost = {r["uniqueId"] for r in drift["lost"]}
    doubled = {r["uniqueId"] for r in drift["doubled"]}
    assert lost and doubled and not lost & doubled
    assert all(r["dimensions"]["emulator_copy"] == "true" for r in drift["doubled"])
    assert cells(usage(session, emulator, aggregation="COUNT"))[("a", T0)] == 50 - len(lost) + len(doubled)
    stats = emulator.stats()
    assert stats["lost"] == len(lost) and stats["doubled"] == len(doubled) and stats["distinct"] == 50


def test_drift_faults_from_the_command_line():
    from amberflo_sync.emulator.__main__ import build_parser, fault_config_from

    args = build_parser().parse_args(["--api-key", "k", "--rate-lose", "0.1", "--rate-double", "0.05"])
    config = fault_config_from(args)
    assert (config.rate_lose, config.rate_double) == (0.1, 0.05) and config.active
