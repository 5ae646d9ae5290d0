"""Compare stage: base vs tuned × backends × tasks in one resumable run. plan.py (settings,
cells, cache keys), cell.py (one cell), executors.py (who runs the cells: here or on Ray),
run.py (compare()); the report from the saved run: summary.py, stats.py, plots.py,
render.py; demo.py runs the whole loop on the demo set."""
