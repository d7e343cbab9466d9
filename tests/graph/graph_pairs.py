"""A labelled set of request pairs for reuse: true duplicates and paraphrases (``DUP``), and near misses
(``MISS``) of every kind a reuse must never cross: with/without, quantities, colours, another product,
another topic, audience, template version, language and output kind. English and Chinese."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from contentmill.knowledge_graph import RequestFacts

DUP, MISS = "duplicate", "near miss"
DESCRIPTION = "product_description@2"
VIDEO = "creator_video@1"


def product(text: str, entity: str | None = None, language: str = "en", **fields: Any) -> RequestFacts:
    return RequestFacts("text", text, language=language, template=DESCRIPTION, entity=entity, fields=fields)


def topic(text: str, language: str = "en") -> RequestFacts:
    return RequestFacts("video", text, language=language, template=VIDEO)


@dataclass(frozen=True)
class Pair:
    label: str
    first: RequestFacts
    second: RequestFacts
    why: str


BOTTLE = product(
    "Write a product description for a 500 ml red steel water bottle with lid.",
    "B0-BOTTLE-1",
    name="Trail steel bottle",
    capacity="500 ml",
    colour="red",
    lid="with lid",
    price=19.99,
)
MUG = product(
    "Describe a white 350 ml ceramic mug that is dishwasher safe.",
    "B0-MUG-7",
    name="Ceramic mug",
    capacity="350 ml",
    colour="white",
    dishwasher_safe=True,
)
SOCKS = product("A 2-pack of black cotton socks, size 10")
CHOCOLATE = product("Sugar-free dark chocolate bar, 100 g")
CHARGER = product("USB-C charger, 65 W")
PAN = product("Non-stick frying pan, 28 cm")
ZH_CUP = product("写一段500毫升红色保温杯的产品描述", language="zh")
ZH_LIDLESS = product("无盖保温杯的介绍", language="zh")
ZH_FACTS = topic("五个关于章鱼的冷知识", language="zh")
ZH_BEES = topic("关于蜜蜂的简短视频", language="zh")
ZH_YOGURT = product("不含糖的酸奶介绍", language="zh")
BEES = topic("A short video about honey bees")
SKY = topic("Why is the sky blue?")
OCTOPUS = topic("Five facts about octopuses")
SLEEP = topic("Tips for better sleep")
SOLAR = topic("How do solar panels work?")
EIFFEL = topic("The history of the Eiffel Tower")
BUTTERFLY = topic("The life cycle of a butterfly")
VOLCANO = topic("A 60-second video about how volcanoes erupt")
COFFEE = topic("How to brew coffee without a machine")

PAIRS: list[Pair] = [
    # true duplicates and paraphrases ---------------------------------------------------------------
    Pair(DUP, BOTTLE, BOTTLE, "the same request again"),
    Pair(
        DUP,
        BOTTLE,
        replace(
            BOTTLE,
            text="Write a product description for a 0.5 l red steel water bottle with a lid.",
            fields={**BOTTLE.fields, "capacity": "0.5 l"},
        ),
        "0.5 l is 500 ml",
    ),
    Pair(
        DUP,
        BOTTLE,
        replace(
            BOTTLE, text="Please write a product description for a red 500 ml steel water bottle with lid"
        ),
        "word order, please",
    ),
    Pair(DUP, BOTTLE, replace(BOTTLE, fields={**BOTTLE.fields, "colour": "Red "}), "field case and spaces"),
    Pair(DUP, MUG, replace(MUG, text="Describe a 350ml white ceramic mug, dishwasher safe."), "punctuation"),
    Pair(DUP, SOCKS, product("A two-pack of black cotton socks, size 10"), "2 is two"),
    Pair(DUP, CHOCOLATE, product("Sugar-free dark chocolate bar, 100 grams"), "g is grams"),
    Pair(DUP, CHARGER, product("USB-C charger, 65W"), "65 W is 65W"),
    Pair(DUP, PAN, product("Non-stick frying pan, 280 mm"), "28 cm is 280 mm"),
    Pair(DUP, BEES, topic("A brief video explaining honey bees"), "paraphrase"),
    Pair(DUP, SKY, topic("Why the sky is blue"), "paraphrase"),
    Pair(DUP, OCTOPUS, topic("5 fun facts about octopuses"), "five is 5"),
    Pair(DUP, SLEEP, topic("Tips to sleep better"), "paraphrase"),
    Pair(DUP, SOLAR, topic("How solar panels work"), "paraphrase"),
    Pair(DUP, EIFFEL, topic("History of the Eiffel Tower"), "article dropped"),
    Pair(DUP, BUTTERFLY, topic("The life cycle of butterflies"), "plural"),
    Pair(DUP, VOLCANO, topic("A 1-minute video about how volcanoes erupt"), "60 seconds is 1 minute"),
    Pair(DUP, COFFEE, topic("How to brew coffee with no machine"), "without is with no"),
    Pair(DUP, topic("How volcanoes erupt"), topic("How do volcanoes erupt?"), "question form"),
    Pair(
        DUP, topic("The benefits of drinking water"), topic("Benefits of drinking water"), "article dropped"
    ),
    Pair(
        DUP,
        topic("How to make pour-over coffee at home"),
        topic("How to make pour-over coffee at home."),
        "full stop",
    ),
    Pair(DUP, topic("Why do cats purr?"), topic("Why cats purr"), "question form"),
    Pair(
        DUP,
        ZH_CUP,
        product("为0.5升红色保温杯写一段商品介绍", language="zh"),
        "0.5升 is 500毫升, 介绍 is 描述",
    ),
    Pair(DUP, ZH_CUP, ZH_CUP, "the same request again"),
    Pair(DUP, ZH_LIDLESS, product("不带盖子的保温杯的介绍", language="zh"), "不带盖子 is 无盖"),
    Pair(DUP, ZH_FACTS, topic("关于章鱼的五个冷知识", language="zh"), "word order"),
    Pair(DUP, ZH_BEES, topic("蜜蜂的短视频", language="zh"), "简短视频 is 短视频"),
    Pair(
        DUP,
        topic("为什么天空是蓝色的", language="zh"),
        topic("天空为什么是蓝色的", language="zh"),
        "word order",
    ),
    Pair(DUP, ZH_YOGURT, product("无糖的酸奶介绍", language="zh"), "不含糖 is 无糖"),
    Pair(
        DUP,
        topic("如何冲泡手冲咖啡", language="zh"),
        topic("怎样冲泡手冲咖啡", language="zh"),
        "如何 is 怎样",
    ),
    # near misses: with / without ----------------------------------------------------------------------
    Pair(
        MISS,
        BOTTLE,
        replace(
            BOTTLE,
            text="Write a product description for a 500 ml red steel water bottle without lid.",
            fields={**BOTTLE.fields, "lid": "without lid"},
        ),
        "without lid",
    ),
    Pair(
        MISS,
        BOTTLE,
        replace(BOTTLE, text="Write a product description for a 500 ml red steel water bottle without lid."),
        "without lid in the text only",
    ),
    Pair(
        MISS,
        MUG,
        replace(
            MUG,
            text="Describe a white 350 ml ceramic mug that is not dishwasher safe.",
            fields={**MUG.fields, "dishwasher_safe": False},
        ),
        "not dishwasher safe",
    ),
    Pair(MISS, CHOCOLATE, product("Dark chocolate bar with sugar, 100 g"), "with sugar"),
    Pair(MISS, PAN, product("Frying pan, 28 cm"), "not non-stick"),
    Pair(MISS, COFFEE, topic("How to brew coffee with a machine"), "with a machine"),
    Pair(
        MISS,
        product("Wireless earbuds with 30 hours of battery"),
        product("Wired earbuds with 30 hours of battery"),
        "wired",
    ),
    Pair(MISS, product("Gluten-free pasta, 500 g"), product("Pasta, 500 g"), "not gluten-free"),
    # near misses: quantities ---------------------------------------------------------------------------
    Pair(
        MISS,
        BOTTLE,
        replace(
            BOTTLE,
            text="Write a product description for a 750 ml red steel water bottle with lid.",
            fields={**BOTTLE.fields, "capacity": "750 ml"},
        ),
        "750 ml",
    ),
    Pair(MISS, BOTTLE, replace(BOTTLE, fields={**BOTTLE.fields, "price": 24.99}), "another price"),
    Pair(MISS, SOCKS, product("A 3-pack of black cotton socks, size 10"), "3-pack"),
    Pair(MISS, SOCKS, product("A 2-pack of black cotton socks, size 11"), "size 11"),
    Pair(MISS, CHARGER, product("USB-C charger, 30 W"), "30 W"),
    Pair(MISS, OCTOPUS, topic("Ten facts about octopuses"), "ten facts"),
    Pair(MISS, VOLCANO, topic("A 10-minute video about how volcanoes erupt"), "10 minutes"),
    Pair(
        MISS,
        product("Laptop stand for 15 inch laptops"),
        product("Laptop stand for 13 inch laptops"),
        "13 inch",
    ),
    Pair(
        MISS, product("Dog food for puppies, 5 kg bag"), product("Dog food for puppies, 15 kg bag"), "15 kg"
    ),
    Pair(MISS, topic("How to learn Python in 30 days"), topic("How to learn Python in 7 days"), "7 days"),
    # near misses: colours --------------------------------------------------------------------------------
    Pair(
        MISS,
        BOTTLE,
        replace(
            BOTTLE,
            text="Write a product description for a 500 ml blue steel water bottle with lid.",
            fields={**BOTTLE.fields, "colour": "blue"},
        ),
        "blue",
    ),
    Pair(MISS, SOCKS, product("A 2-pack of grey cotton socks, size 10"), "grey"),
    Pair(MISS, product("Phone case in light blue"), product("Phone case in dark blue"), "dark blue"),
    # near misses: another product or topic -----------------------------------------------------------------
    Pair(MISS, BOTTLE, replace(BOTTLE, entity="B0-BOTTLE-2"), "another product id"),
    Pair(
        MISS,
        product("Hydro Flask 32 oz insulated bottle"),
        product("Contigo 32 oz insulated bottle"),
        "brand",
    ),
    Pair(MISS, product("A clear case for the iPhone 15"), product("A clear case for the iPhone 14"), "model"),
    Pair(
        MISS,
        product("Samsung Galaxy S23 screen protector"),
        product("Samsung Galaxy S24 screen protector"),
        "model code",
    ),
    Pair(
        MISS,
        product("Queen size bed sheets, 100% cotton"),
        product("King size bed sheets, 100% cotton"),
        "size",
    ),
    Pair(
        MISS, product("Running shoes for women, size 8"), product("Running shoes for men, size 8"), "audience"
    ),
    Pair(MISS, BEES, topic("A short video about wasps"), "wasps"),
    Pair(MISS, SKY, topic("Why is the sea blue?"), "the sea"),
    Pair(MISS, OCTOPUS, topic("Five facts about squid"), "squid"),
    Pair(MISS, SOLAR, topic("How do wind turbines work?"), "wind turbines"),
    Pair(MISS, EIFFEL, topic("The history of the Statue of Liberty"), "another monument"),
    Pair(MISS, BUTTERFLY, topic("The life cycle of a frog"), "frog"),
    Pair(MISS, SLEEP, topic("Tips for better sleep for kids"), "audience"),
    Pair(MISS, topic("How to care for a cat"), topic("How to care for a dog"), "dog"),
    Pair(MISS, topic("The history of Rome"), topic("The history of Athens"), "Athens"),
    Pair(
        MISS,
        topic("How to learn Python in 30 days"),
        topic("How to learn JavaScript in 30 days"),
        "JavaScript",
    ),
    Pair(MISS, topic("Healthy breakfast ideas"), topic("Healthy dinner ideas"), "dinner"),
    Pair(MISS, topic("Easy vegan recipes"), topic("Easy vegetarian recipes"), "vegetarian"),
    # near misses: template version, language, output kind ---------------------------------------------------
    Pair(MISS, BOTTLE, replace(BOTTLE, template="product_description@3"), "template version"),
    Pair(MISS, BOTTLE, replace(BOTTLE, language="de"), "language"),
    Pair(MISS, BOTTLE, replace(BOTTLE, kind="audio"), "output kind"),
    Pair(MISS, BEES, replace(BEES, kind="text"), "output kind"),
    # near misses in Chinese ------------------------------------------------------------------------------
    Pair(MISS, ZH_BEES, topic("关于蚂蚁的简短视频", language="zh"), "蚂蚁 (ants)"),
    Pair(MISS, ZH_CUP, product("写一段750毫升红色保温杯的产品描述", language="zh"), "750毫升"),
    Pair(MISS, ZH_CUP, product("写一段500毫升蓝色保温杯的产品描述", language="zh"), "蓝色"),
    Pair(MISS, ZH_LIDLESS, product("带盖保温杯的介绍", language="zh"), "带盖 (with lid)"),
    Pair(MISS, ZH_FACTS, topic("十个关于章鱼的冷知识", language="zh"), "十个"),
    Pair(
        MISS,
        product("写一段保温杯的产品描述", language="zh"),
        product("写一段咖啡机的产品描述", language="zh"),
        "咖啡机 (coffee machine)",
    ),
    Pair(MISS, ZH_YOGURT, product("含糖的酸奶介绍", language="zh"), "含糖 (with sugar)"),
    Pair(
        MISS, product("儿童保温杯的介绍", language="zh"), product("成人保温杯的介绍", language="zh"), "成人"
    ),
    Pair(
        MISS,
        product("写一段保温杯的产品描述", language="zh"),
        product("写一段保温杯的视频脚本", language="zh"),
        "视频脚本 (video script)",
    ),
    Pair(MISS, ZH_CUP, replace(ZH_CUP, language="en"), "language"),
]
