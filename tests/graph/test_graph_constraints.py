"""Hard constraints read out of free text: equal amounts compare equal, and what changes a request shows."""

from __future__ import annotations

import pytest

from contentmill.knowledge_graph.constraints import canonical_value, extract, field_constraints, read
from contentmill.knowledge_graph.units import parse_cjk_number


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("a 500 ml bottle", "a 0.5 l bottle"),
        ("a 500ml bottle", "a 0.5 litre bottle"),
        ("a 500毫升的杯子", "a 0.5升的杯子"),
        ("a 28 cm pan", "a 280 mm pan"),
        ("a 60-second clip", "a 1 minute clip"),
        ("weighs 1,000 g", "weighs 1 kg"),
        ("five facts", "5 facts"),
        ("heats to 212°F", "heats to 100℃"),
        ("a 2-pack", "a two-pack"),
        ("without lid", "with no lid"),
        ("lid not included", "without a lid"),
        ("a lidless cup", "a cup without lid"),
        ("BPA-free", "free of BPA"),
        ("gray", "grey"),
        ("深蓝色", "dark blue"),
        ("无盖保温杯", "不带盖子的保温杯"),
        ("五个关于章鱼的冷知识", "关于章鱼的五个冷知识"),
    ],
)
def test_the_same_constraint_in_other_words(one: str, other: str) -> None:
    assert extract(one) and extract(one) == extract(other), (sorted(extract(one)), sorted(extract(other)))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("a bottle with lid", "a bottle without lid"),
        ("a 500 ml bottle", "a 750 ml bottle"),
        ("a red bottle", "a blue bottle"),
        ("a light blue case", "a dark blue case"),
        ("a red bottle", "a red and black bottle"),
        ("dishwasher safe", "not dishwasher safe"),
        ("wireless earbuds", "wired earbuds"),
        ("iPhone 15 case", "iPhone 14 case"),
        ("Galaxy S23", "Galaxy S24"),
        ("shoes for women", "shoes for men"),
        ("queen size sheets", "king size sheets"),
        ("$20 gift", "$25 gift"),
        ("$20 gift", "€20 gift"),
        ("5 months", "5 years"),
        ("a bottle by Contigo", "a bottle by Thermos"),
        ("关于蜜蜂的视频", "关于蚂蚁的视频"),
        ("写一段保温杯的产品描述", "写一段保温杯的视频脚本"),
        ("不含糖的酸奶", "含糖的酸奶"),
        ("红色保温杯", "白色保温杯"),
        ("三个杯子", "两个杯子"),
        ("USB-C charger", "USB-A charger"),
    ],
)
def test_a_changed_constraint_is_seen(one: str, other: str) -> None:
    assert extract(one) != extract(other)


def test_constraints_are_named_by_family() -> None:
    found = extract("Capacity: 500 ml, colour: Red. A lidless 32 oz Contigo bottle for kids, size XL")
    assert {
        "field=capacity:0.5l",
        "field=colour:red",
        "qty=0.5l",
        "colour=red",
        "neg=lid",
        "name=contigo",
        "for=children",
        "size=xl",
        "qty=0.907184736kg",
    } <= found


def test_the_rest_drops_what_the_constraints_compare() -> None:
    assert read("Non-stick frying pan, 28 cm").rest == read("Non-stick frying pan, 280 mm").rest
    assert (
        read("为0.5升红色保温杯写一段商品介绍").rest
        == read("写一段500毫升红色保温杯的产品描述").rest
        == "保温杯"
    )


def test_field_values_compare_as_values() -> None:
    assert canonical_value("0.5 L") == canonical_value("500ml") == "0.5l"
    assert canonical_value(" Red ") == canonical_value("red")
    assert canonical_value(3) == canonical_value(3.0) == "3"
    assert canonical_value(True) == "true" and canonical_value(["a", 1]) == "[a,1]"
    assert field_constraints({"Colour": "Red"}) == {"field=colour:red"}
    assert field_constraints({"price": 19.99}) != field_constraints({"price": 24.99})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("五百", 500),
        ("两", 2),
        ("十五", 15),
        ("一千二百", 1200),
        ("三点五", 3.5),
        ("一万", 10000),
        ("500", 500),
    ],
)
def test_chinese_numbers(text: str, value: float) -> None:
    assert parse_cjk_number(text) == value
