"""Write the MiniLM vectors of Font Awesome Free's icon descriptions that ship in the package (float16, ~1 MB),
so offline videos match icons at once instead of embedding 1,395 descriptions on first use.

Run after changing the fontawesomefree version: ``.venv/bin/python scripts/icon_vectors.py``.
"""

from __future__ import annotations

import numpy as np

from contentmill.media.icons import icon_set
from contentmill.providers.sentence import SentenceEmbedder
from contentmill.video.illustrate import shipped_vectors_path


def main() -> None:
    vectors = SentenceEmbedder().encode([icon.description for icon in icon_set()])
    path = shipped_vectors_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float16))
    print(f"{path}: {vectors.shape[0]} icons x {vectors.shape[1]} dimensions")


if __name__ == "__main__":
    main()
