#!/usr/bin/env python3
"""nlbench command line: see README.md, or `python bench.py --help`."""
import sys

from nlbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
