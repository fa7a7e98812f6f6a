"""Write a grid's report: tables (md, csv, tex), figures (png) and ``report.html``."""

from __future__ import annotations

from pathlib import Path

from xstilts.errors import XstiltsError
from xstilts.experiment.report_spec import ReportSpec, saved_report_spec
from xstilts.experiment.results_db import SCORE_METRIC
from xstilts.report import csv_tables, figures
from xstilts.report.data import load_grid
from xstilts.report.html import page
from xstilts.report.layout import (
    Fmt,
    adversarial_table,
    baseline_comparisons_table,
    fallbacks_table,
    family_table,
    main_table,
    parameters_table,
    question_table,
    robustness_table,
    xtreme_table,
)
from xstilts.report.render import to_latex, to_markdown
from xstilts.report.robustness import robustness_rows
from xstilts.report.selection import load_selection, selection_figure, selection_table
from xstilts.report.statistics import Correction
from xstilts.report.summary import summary
from xstilts.report.tables import (
    adversarial_rows,
    family_rows,
    main_rows,
    question_rows,
    xtreme_score,
)


def write_report(
    grid_dir: Path | str,
    out_dir: Path | str,
    *,
    target_for_languages: str | None = None,
    metric: str | None = None,
    correction: Correction | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write every report file of ``grid_dir`` into ``out_dir``; returns the paths.
    ``metric``: the per-language number options are compared by (default: the grid's
    report.metric, else the XTREME task score); ``correction``: multiple comparisons
    within each table (default: the grid's report.correction, Holm)."""
    grid_dir, out_dir = Path(grid_dir), Path(out_dir)
    spec = saved_report_spec(grid_dir) or ReportSpec()
    metric = metric or spec.metric or SCORE_METRIC
    correction = correction or spec.correction
    grid = load_grid(grid_dir, metric, baseline=spec.baseline)
    if not grid.targets:
        raise XstiltsError(f"{grid_dir}: no finished runs with scores to report")
    target = target_for_languages or grid.targets[0]
    if target not in grid.targets:
        raise XstiltsError(f"unknown target '{target}'; known: {', '.join(grid.targets)}")
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = main_rows(grid, correction, seed=seed)
    families = family_rows(rows, grid.targets, grid, correction, seed=seed)
    score = xtreme_score(rows, grid)
    questions = question_rows(grid, spec.comparisons, correction, seed=seed)
    fmt = Fmt(rows)
    uneven = {t: grid.uneven_languages(t) for t in grid.targets if grid.uneven_languages(t)}
    language_notes = (
        grid.languages_words(),
        *(
            f"{t}: {', '.join(langs)} left out of every average (not evaluated by every run)."
            for t, langs in uneven.items()
        ),
    )
    tables = []
    if questions:
        tables.append(question_table(questions, fmt, metric, correction))
    tables += [
        main_table(rows, grid.targets, metric, correction, language_notes),
        xtreme_table(score, grid.targets, fmt),
        family_table(families, grid.targets, fmt, correction),
    ]
    robustness = robustness_rows(grid, correction, seed=seed)
    tables.append(robustness_table(robustness, fmt, metric, correction))
    if any(row.option.adapters for row in rows):
        tables.append(parameters_table(rows, grid, fmt))
    adversarial = adversarial_rows(grid, correction, seed=seed)
    if adversarial:
        tables.append(adversarial_table(adversarial, fmt, correction))
    tables.append(baseline_comparisons_table(rows, grid.targets, fmt))
    fallbacks = fallbacks_table(grid)
    if fallbacks is not None:
        tables.append(fallbacks)
    written = [
        csv_tables.write_main_csv(rows, grid.targets, out_dir / "main.csv"),
        csv_tables.write_xtreme_csv(score, grid.targets, out_dir / "xtreme.csv"),
        csv_tables.write_family_csv(families, grid.targets, out_dir / "families.csv"),
    ]
    if questions:
        written.append(csv_tables.write_question_csv(questions, out_dir / "question.csv"))
    if adversarial:
        written.append(csv_tables.write_adversarial_csv(adversarial, out_dir / "adversarial.csv"))
    answers = summary(
        grid,
        rows,
        score,
        robustness,
        adversarial,
        questions,
        fmt,
        question=spec.question,
        correction=correction,
    )
    md = out_dir / "tables.md"
    md.write_text(
        f"# {grid.name}\n\n"
        + "".join(f"- {line}\n" for line in answers)
        + "\n"
        + "\n".join(to_markdown(t) for t in tables),
        "utf-8",
    )
    tex = out_dir / "tables.tex"
    tex.write_text(
        "% requires \\usepackage{booktabs}\n" + "\n".join(to_latex(t) for t in tables), "utf-8"
    )
    pngs = [
        figures.heatmap(rows, grid.targets, out_dir / "heatmap.png"),
        figures.per_language(grid, target, out_dir / f"languages_{target}.png"),
        figures.robustness(robustness, out_dir / "robustness.png"),
    ]
    if grid.varies_size:
        pngs.append(figures.learning_curves(grid, out_dir / "learning_curves.png"))
    selected = load_selection(grid_dir)
    if selected is not None:
        chosen = selection_table(selected)
        tables.append(chosen)
        written.append(out_dir / "selection.md")
        written[-1].write_text(to_markdown(chosen), "utf-8")
        pngs.append(selection_figure(selected, out_dir / "selection.png"))
    report = out_dir / "report.html"
    report.write_text(page(grid.name, tables, pngs, answers), "utf-8")
    return [*written, md, tex, *pngs, report]
