"""The lab beside the product: games, benchmarks, search, tables and plots (``scan eval``).

Why a separate package: the evaluation measures the product the way a user meets it, so it
calls only the product's public names (``scanner.scan``, the detector/defense/attack
registries, the importer) and never reaches into a module's private helpers; a test holds it
to that. Every result is a row in one resumable JSONL store (:mod:`scanner.lab.rows`).
"""
