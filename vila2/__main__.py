"""``python -m vila2`` (and ``accelerate launch -m vila2 ...``)."""

from vila2.cli import main

if __name__ == "__main__":
    main()
