"""The run's self-contained HTML report (DESIGN.md section 7).

sources.py reads the files (the one place that knows their names and keys), build.py turns them
into what each section shows, svg.py draws the charts, render.py fills the jinja2 template.
"""
