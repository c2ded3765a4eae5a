"""The bank sample: accounts, customers (personal data), transfers, three read models.

Run the tour with ``python -m samples.bank``; load the app in the CLI with
``eventkit --app samples.bank.app:app status``.
"""
