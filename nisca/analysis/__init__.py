"""Ray Tune experiment folders -> pandas tables, matplotlib figures and a Markdown/HTML report.

    from nisca.analysis import load_studies, write_report
    results = load_studies(["~/ray_results/synthetic_snr"])   # .trials, .epochs: tidy DataFrames
    write_report(["~/ray_results/synthetic_snr"], "report/")   # report.md, report.html, PNGs, CSVs
"""

from nisca.analysis.load import Study, StudyResults, load_studies, load_study
from nisca.analysis.outputs import TrialOutputs, load_trial_outputs
from nisca.analysis.report import ReportFiles, report_command, write_report

__all__ = [
    "ReportFiles",
    "Study",
    "StudyResults",
    "TrialOutputs",
    "load_studies",
    "load_study",
    "load_trial_outputs",
    "report_command",
    "write_report",
]
