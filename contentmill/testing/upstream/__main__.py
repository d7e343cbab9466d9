"""``python -m contentmill.testing.upstream``: serve a fake upstream until SIGTERM or SIGINT."""

import sys

from contentmill.testing.upstream.cli import main

sys.exit(main())
