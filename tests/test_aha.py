"""Aha!'s protocol facts (aha.py) and the placeholder syntax (placeholders.py), in-process."""

from __future__ import annotations

import pytest

from target_aha import aha, placeholders


def test_placeholders_are_read_one_way() -> None:
    assert placeholders.split("/releases/{release_id}/features") == (
        ("/releases/", "release_id"), ("/features", None),
    )
    assert placeholders.names("/products/{product_id}/custom_objects/{key}/records") == (
        "product_id", "key",
    )
    assert placeholders.names("{{literal}}-{a:x}-{}") == ("a",)  # escapes, specs, empty
    with pytest.raises(ValueError):
        placeholders.split("{unclosed")


def test_a_listing_answer_gives_its_objects_and_says_when_it_is_the_last_page() -> None:
    page = {"features": [{"id": 1}, {"name": "no id"}, "junk"],
            "pagination": {"total_pages": 3}}
    assert aha.listed(page) == [{"id": 1}]
    assert aha.listed("<html>") is None
    assert aha.listed({"pagination": {}}) == []
    assert not aha.last_page(page, 2) and aha.last_page(page, 3)
    assert aha.last_page({"features": []}, 1)  # no pagination: one page
    assert aha.last_page({"pagination": {"total_pages": "many"}}, 1)


def test_a_listing_query_is_narrowed_only_as_asked() -> None:
    assert aha.listing_query(since=None, search=None) == {"per_page": "200"}
    assert aha.listing_query(since=0.0, search="Login") == {
        "per_page": "200", "updated_since": "1970-01-01T00:00:00+00:00", "q": "Login",
    }
    assert aha.page_query(2) == {"page": "2"}


def test_objects_in_answers() -> None:
    assert aha.object_in({"feature": {"id": "1"}}, "feature") == {"id": "1"}
    assert aha.object_in({"other": {"id": "2"}}, "feature") == {"id": "2"}
    assert aha.named_object({"feature": {"name": "x"}}, "feature") is None
    assert aha.named_object({"feature": {"id": True}}, "feature") is None
    assert aha.text(12) == "12" and aha.text(None) is None


def test_listed_objects_are_matched_by_name_or_by_custom_fields() -> None:
    assert aha.carries({"name": "A"}, {"name": "A"}, None)
    record = {"custom_fields": [{"key": "size", "value": 3}]}
    assert aha.carries(record, {"custom_fields": {"size": "3"}}, "custom_fields")
    assert not aha.carries(record, {"custom_fields": {}}, "custom_fields")
    assert aha.created_at({"created_at": "2026-01-01T00:00:00Z"}) == 1767225600.0
    assert aha.created_at({"created_at": "yesterday"}) is None


def test_collections_of_created_and_deleted_objects() -> None:
    assert aha.collection_of("https://a.aha.io/api/v1/releases/R-1/features") == "features"
    records = "https://a.aha.io/api/v1/products/P/custom_objects/t/records"
    assert aha.collection_of(records) == "custom_object_records"
    assert aha.object_path("/epics/PRJ1-E-2") == ("epics", "PRJ1-E-2")
    assert aha.object_path("/custom_object_records/a%2Fb/") == ("custom_object_records", "a/b")
