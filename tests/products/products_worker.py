"""Run the product-descriptions flow in a process of its own, for the test that kills it mid-run:
``python products_worker.py CATALOG OUT CONFIG_JSON`` (the environment names the upstream and data dir)."""

from __future__ import annotations

import asyncio
import json
import sys

from contentmill.flows.product_descriptions import product_descriptions

if __name__ == "__main__":
    catalog, out, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    summary = asyncio.run(product_descriptions(catalog=catalog, out=out, config=config))
    print(json.dumps(summary))
