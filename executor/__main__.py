"""``python -m executor``."""

from executor.cli import main

if __name__ == "__main__":
    main()
