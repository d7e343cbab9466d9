"""Catalog reading, tier rules, quality checks and the fake upstream's packed answers, without a flow."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from products_helpers import COLUMNS, SHARED_CATALOG, product_row, write_catalog

from contentmill.errors import ConfigError
from contentmill.products.catalog import CELL_LIMIT, csv_records, product_id, read_catalog
from contentmill.products.checks import run_checks
from contentmill.products.config import Checks, Columns, ProductsConfig, load_config
from contentmill.products.prompts import Item, build_request, parse_answer
from contentmill.products.tiers import assign, next_tier, tier_shares
from contentmill.testing.packed import CORRUPT_TEXT, packed_items, packed_reply


def test_messy_rows_go_to_the_errors_with_their_reason_and_the_rest_is_read(tmp_path: Path) -> None:
    good = [product_row(n) for n in range(5)]
    path = tmp_path / "messy.csv"
    scraped = {"Selling Price": "$ 19 99 $39.95 #listPrice { margin-left: 4px !important; }"}
    write_catalog(path, [good[0], product_row(9, **{"Product Name": "  "}), good[1], good[1], product_row(2, **scraped),
                         product_row(7, **{"Uniq Id": "", "Selling Price": "Total price:"})])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("x1," + ",".join(["extra"] * (len(COLUMNS) + 2)) + "\n")
    catalog = read_catalog(path, Columns())
    assert [p.id for p in catalog.products][:3] == ["p0000", "p0001", "p0002"]
    assert (catalog.products[2].price, catalog.products[2].price_text) == (19.0, "$19")  # no markup reaches a prompt
    no_id = catalog.products[3]
    assert no_id.id == product_id(no_id.name, no_id.brand) and no_id.price is None and no_id.price_text == ""
    reasons = {e.row: e.reason for e in catalog.errors}
    assert "no product name" in reasons[2]
    assert reasons[4].startswith("duplicate id p0001")
    assert reasons[7].startswith("unparsable:") and "cells" in reasons[7]
    assert len(catalog.products) == 4 and len(catalog.errors) == 3


def test_a_jsonl_catalog_with_its_own_columns_and_a_broken_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [json.dumps({"sku": "A-1", "title": "Linen Apron", "price": "12.50"}), "{not json",
             json.dumps(["a", "list"]), json.dumps({"sku": "A-2", "title": "Oak Spoon", "price": 4})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    columns = Columns(id="sku", name="title", price="price", brand=None, category=None, about=None, specs=None)
    catalog = read_catalog(path, columns)
    assert [(p.id, p.name, p.price) for p in catalog.products] == [("A-1", "Linen Apron", 12.5),
                                                                   ("A-2", "Oak Spoon", 4.0)]
    assert [e.row for e in catalog.errors] == [2, 3]
    with pytest.raises(ConfigError, match="no catalog file"):
        read_catalog(tmp_path / "missing.csv", columns)


@pytest.mark.parametrize("text", [
    'a,b\r\n1,2\r\n', 'a,b\n"x\ny",2\n', 'a,"b""c",d\n', 'a,b"c,d\n', '"a"b,c\n', 'a,b\r\r\n\n1,2',
    '\n\n', '"unclosed,a\nb', 'a,b,\n,,\n', '"",""\n', '"a""",b\r', 'x\r\ny\rz\n', '"a\r\nb"\r\n,"é"',
])
def test_records_are_split_where_the_csv_module_splits_them_whatever_the_pieces(text: str) -> None:
    expected = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    for piece in (1, 2, 3, 5, 1 << 20):
        records = list(csv_records(io.StringIO(text, newline=""), piece))
        assert all(not over for _, over in records)
        assert [row for record, _ in records if (row := next(csv.reader((record,)), []))] == expected


def test_a_cell_is_measured_as_read_and_one_over_the_limit_is_left_out() -> None:
    cells = [f'"say ""hi"",{"x" * (CELL_LIMIT - 9)}"', f'"say ""hi"",{"x" * (CELL_LIMIT - 8)}"']  # 4 more written
    text = f"a,{cells[0]},c\nd,{cells[1]},f\ng,h,i\n"
    (within, none), (beyond, over), (last, _) = csv_records(io.StringIO(text, newline=""), 4096)
    assert none == {} and len(next(csv.reader((within,)))[1]) == CELL_LIMIT
    assert over == {1: CELL_LIMIT + 1} and next(csv.reader((beyond,))) == ["d", "", "f"]
    assert last == "g,h,i\n"


def test_a_header_over_the_limit_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("id," + "n" * (CELL_LIMIT + 1) + "\nx,y\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a cell of the header row holds"):
        read_catalog(path, Columns())


def test_a_jsonl_line_over_the_limit_or_beyond_pythons_reach_is_its_rows_error(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    lines = [json.dumps({"sku": "A-1", "title": "Linen Apron"}),
             json.dumps({"sku": "A-2", "title": "Oak Spoon", "about": "x" * (CELL_LIMIT + 1)}),
             '{"sku": "A-3", "title": "Tea Towel", "stock": ' + "9" * 5000 + "}",
             "[" * 100_000, json.dumps({"sku": "A-5", "title": "Bread Knife"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    columns = Columns(id="sku", name="title", brand=None, category=None, price=None, about="about", specs=None)
    catalog = read_catalog(path, columns)
    assert [p.id for p in catalog.products] == ["A-1", "A-5"]
    reasons = {e.row: e.reason for e in catalog.errors}
    assert reasons[2].startswith("the line holds") and f"{CELL_LIMIT:,}" in reasons[2]
    assert reasons[3].startswith("unparsable:") and "digits" in reasons[3]
    assert reasons[4] == "unparsable: arrays or objects nested too deeply"


def test_tier_rules_by_category_price_flag_and_sku(tmp_path: Path) -> None:
    config = load_config(overrides={
        "columns": {"flag": "Launch"},
        "rules": [{"tier": "premium", "flagged": True}, {"tier": "premium", "skus": ["p0003"]},
                  {"tier": "light", "categories": ["toys & games | kites"]},
                  {"tier": "premium", "min_price": 100}, {"tier": "light", "max_price": 5}],
    })
    rows = [product_row(n) for n in range(8)]
    rows[1]["Launch"] = "yes"
    path = tmp_path / "c.csv"
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, "Launch"])
        writer.writeheader()
        writer.writerows(rows)
    products = {p.id: p for p in read_catalog(path, config.columns).products}
    tiers = {pid: assign(p, config) for pid, p in products.items()}
    assert tiers["p0001"] == "premium"  # flagged, before the category rule
    assert tiers["p0003"] == "premium"  # SKU list
    assert tiers["p0002"] == "light"  # kites
    assert tiers["p0000"] == "light"  # $3.50
    assert tiers["p0005"] == "standard"  # $39.75, no rule
    assert next_tier("light") == "standard" and next_tier("premium") is None


def test_a_config_with_a_typo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "products.yaml"
    path.write_text("rules:\n  - tier: premium\n    min_prize: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="min_prize"):
        load_config(path)
    with pytest.raises(ConfigError, match="rules.0.tier"):
        load_config(overrides={"rules": [{"tier": "gold"}]})
    without_light = ProductsConfig(tiers={"standard": ProductsConfig().models("standard")})
    with pytest.raises(ConfigError, match="tiers.light.model"):
        without_light.models("light")


@pytest.mark.skipif(not SHARED_CATALOG.exists(), reason=f"the shared sample catalog is absent ({SHARED_CATALOG})")
def test_the_seed_rules_split_the_sample_catalog_about_5_80_15() -> None:
    config = ProductsConfig()
    catalog = read_catalog(SHARED_CATALOG, config.columns)
    assert len(catalog.products) == 1000 and not catalog.errors
    shares = tier_shares(catalog.products, config)
    assert shares["premium"] == pytest.approx(0.05, abs=0.02)
    assert shares["standard"] == pytest.approx(0.80, abs=0.03)
    assert shares["light"] == pytest.approx(0.15, abs=0.02)


FIELDS = {"name": "Meadow Kite Model 2", "brand": "Meadowlark", "price": "$18.00",
          "about": "Made of bamboo. Fits ages 5 and up."}


def test_the_checks_catch_each_kind_of_bad_description() -> None:
    checks = Checks(min_words=5, max_words=40)
    good = "The Meadowlark Meadow Kite Model 2 is made of bamboo and fits ages 5 and up. Yours for $18.00."
    assert set(run_checks(good, FIELDS, "en", checks).values()) == {None}
    bad = {
        "length": "Meadowlark kite.",
        "key_attributes": "A lovely bamboo toy for the whole family, made for ages 5 and up by a small workshop.",
        "facts": "The Meadowlark Meadow Kite Model 2 is made of bamboo, fits ages 8 and up, for $18.00.",
        "language": "Der Meadowlark Meadow Kite Model 2 ist aus Bambus gemacht und passt ab 5 Jahren.",
        "template_leftovers": "The Meadowlark Meadow Kite Model 2 is made of {material} and fits ages 5 and up.",
    }
    for name, text in bad.items():
        results = run_checks(text, FIELDS, "en", checks)
        assert [n for n, r in results.items() if r] == [name], (name, results)
    pack = {"name": "Balloon Pack", "about": "Pack of 1, 12.50 inches."}
    assert run_checks("A Balloon Pack of 100 balloons, 12.5 inches each.", pack, "en", checks)["facts"]
    assert run_checks("The Balloon Pack holds 1 balloon of 12.5 inches.", pack, "en", checks)["facts"] is None
    assert run_checks("梅多拉克风筝 Meadow Kite Model 2，由竹子制成，适合5岁以上。Meadowlark", FIELDS, "zh",
                      checks)["language"] is None


def test_the_fake_upstream_answers_a_packed_prompt_item_by_item() -> None:
    items = [Item("a1", FIELDS), Item("b2", {**FIELDS, "name": "Oak Spoon"})]
    request = build_request(items, "en", (20, 45))
    prompt = request.messages[-1].content
    assert packed_items(prompt) == [i.payload() for i in items]
    answer = packed_reply(packed_items(prompt) or [], corrupt={"b2"})
    parsed = parse_answer(answer, ["a1", "b2", "c3"])
    assert parsed["b2"] == CORRUPT_TEXT and parsed["c3"] is None
    assert "Meadow Kite Model 2 by Meadowlark" in (parsed["a1"] or "")
    alone = parse_answer(packed_reply([items[1].payload()], corrupt={"b2"}), ["b2"])
    assert "Oak Spoon" in (alone["b2"] or "")  # asked alone, the same item comes back right
    assert parse_answer("not json", ["a1"]) == {"a1": None}


def test_the_nightly_deployment_runs_the_flow_on_a_schedule_with_catalog_parameters() -> None:
    import inspect

    import yaml
    from prefect.client.schemas.schedules import CronSchedule

    from contentmill.flows.product_descriptions import product_descriptions

    repo = Path(__file__).resolve().parents[2]
    deployments = yaml.safe_load((repo / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    (nightly,) = [d for d in deployments if d["name"] == "product-descriptions-nightly"]
    path, _, name = nightly["entrypoint"].partition(":")
    assert (repo / path).is_file() and name == product_descriptions.fn.__name__
    accepted = set(inspect.signature(product_descriptions.fn).parameters)
    assert set(nightly["parameters"]) <= accepted and "catalog" in nightly["parameters"]
    (schedule,) = nightly["schedules"]
    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]) and schedule["active"] is True
