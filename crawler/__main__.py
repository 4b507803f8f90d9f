"""`python -m crawler` is the `crawler` command."""

from crawler.cli import main

if __name__ == "__main__":  # not when a --processes child re-imports it
    main()
