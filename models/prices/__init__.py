"""Daily prices: exchange calendar, sources (sample, folder, yfinance), validation, store, ingest.

Imports only the shared base (`models.config`, `models.diagnosis`, `models.errors`).
"""
