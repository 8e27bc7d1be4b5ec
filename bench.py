#!/usr/bin/env python3
"""nlbench command line: see README.md, or `python bench.py --help`."""
import sys

try:
    from nlbench.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load (the first seconds): nothing has been written yet
    print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
