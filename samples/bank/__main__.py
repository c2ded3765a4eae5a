"""``python -m samples.bank``: the bank tour (see :mod:`samples.bank.tour`)."""

from __future__ import annotations

from samples.bank.tour import main

if __name__ == "__main__":
    raise SystemExit(main())
