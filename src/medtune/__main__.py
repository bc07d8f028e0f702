"""Allow ``python -m medtune``."""

from medtune.cli import main

if __name__ == "__main__":
    main()
