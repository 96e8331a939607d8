"""The study report: self-contained HTML, figures (PNG and SVG), tables (CSV) and summary.json.

``tables`` computes every table from the error table and the analysis (pure functions), ``figures`` draws,
``render`` writes the files and fills ``templates/report.html.j2``: restyle the report there.
"""

from .render import write_report

__all__ = ["write_report"]
