"""Compare stage: base vs tuned × backends × tasks in one resumable run (run.py; executors.py
runs the cells here or on Ray), the report (report.py) and the whole demo loop (demo.py)."""
