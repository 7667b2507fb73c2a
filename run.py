"""Entry point: `python run.py [flags] [migrate | token | user create | board create]`."""

import sys

from scoreboard.cli import main

if __name__ == "__main__":
    sys.exit(main())
