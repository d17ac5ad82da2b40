"""`python -m selfimprove.compare DIR...`: the public entry point of `selfimprove.results.compare`."""

import sys

from selfimprove.results.compare import main

if __name__ == "__main__":
    sys.exit(main())
