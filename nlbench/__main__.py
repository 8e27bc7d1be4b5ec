"""``python -m nlbench``: the command line, as ``bench.py`` in a checkout (what an installed suite runs).

bench.py keeps its own copy of these lines on purpose: importing anything from the package (this module
included) already imports torch, so its Ctrl-C guard must sit outside the package to cover that."""
import sys

try:
    from nlbench.cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load (the first seconds): nothing has been written yet
    print("\ninterrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
