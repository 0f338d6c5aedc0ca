//! Evaluation plots as SVG (plotters' SVG backend: text is emitted as SVG `<text>`, so no system
//! fonts are needed to write them).
//!
//! Per cutoff: `roc`, `pr`, `calibration` (reliability diagram), `gains` (cumulative gains with
//! lift on a second panel) and `scores` (score histogram by label), each as
//! `DIR/<name>-<YYYY-MM-DD>.svg`.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::evaluate::CutoffScores;
use super::quality::{calibration, ranked};

/// One line of a chart: legend label, colour, points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

type PlotResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const SIZE: (u32, u32) = (640, 480);
const MAX_POINTS: usize = 600;

fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let step = points.len() as f64 / MAX_POINTS as f64;
    let mut out: Vec<(f64, f64)> = (0..MAX_POINTS)
        .map(|i| points[(i as f64 * step) as usize])
        .collect();
    out.push(*points.last().expect("non-empty"));
    out
}

/// (false positive rate, true positive rate) at every distinct score, highest first.
pub fn roc_points(s: &CutoffScores) -> Vec<(f64, f64)> {
    let pos = s.labels.iter().filter(|&&l| l).count().max(1) as f64;
    let neg = (s.labels.len() as f64 - pos).max(1.0);
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let idx = ranked(&s.scores);
    for (k, &i) in idx.iter().enumerate() {
        if s.labels[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        if idx.get(k + 1).is_none_or(|&j| s.scores[j] != s.scores[i]) {
            pts.push((fp / neg, tp / pos));
        }
    }
    thin(pts)
}

/// (recall, precision) at every distinct score, highest first.
pub fn pr_points(s: &CutoffScores) -> Vec<(f64, f64)> {
    let pos = s.labels.iter().filter(|&&l| l).count().max(1) as f64;
    let mut pts = Vec::new();
    let (mut tp, mut n) = (0.0, 0.0);
    let idx = ranked(&s.scores);
    for (k, &i) in idx.iter().enumerate() {
        n += 1.0;
        if s.labels[i] {
            tp += 1.0
        }
        if idx.get(k + 1).is_none_or(|&j| s.scores[j] != s.scores[i]) {
            pts.push((tp / pos, tp / n));
        }
    }
    thin(pts)
}

/// (share of users contacted, share of churners captured), highest scores first.
pub fn gains_points(s: &CutoffScores) -> Vec<(f64, f64)> {
    let pos = s.labels.iter().filter(|&&l| l).count().max(1) as f64;
    let n = s.labels.len().max(1) as f64;
    let mut pts = vec![(0.0, 0.0)];
    let mut tp = 0.0;
    for (k, &i) in ranked(&s.scores).iter().enumerate() {
        if s.labels[i] {
            tp += 1.0
        }
        pts.push(((k + 1) as f64 / n, tp / pos));
    }
    thin(pts)
}

fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    y_max: f64,
    series: &[Series<'_>],
) -> PlotResult<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for (name, color, pts) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

const MODEL: RGBColor = RGBColor(31, 119, 180);
const CHANCE: RGBColor = RGBColor(150, 150, 150);
const CHURN: RGBColor = RGBColor(214, 39, 40);

/// Writes every plot for one cutoff into `dir`; returns the files written.
pub fn write_all(
    dir: &Path,
    day: &str,
    s: &CutoffScores,
    auc: Option<f64>,
) -> PlotResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = |name: &str| dir.join(format!("{name}-{day}.svg"));
    let mut written = Vec::new();
    let base = s.labels.iter().filter(|&&l| l).count() as f64 / s.labels.len().max(1) as f64;

    let p = file("roc");
    let auc_text = auc.map_or("–".into(), |a| format!("{a:.3}"));
    line_chart(
        &p,
        &format!("ROC at {day} (AUC {auc_text})"),
        "false positive rate",
        "true positive rate",
        1.0,
        &[
            ("model", MODEL, roc_points(s)),
            ("chance", CHANCE, vec![(0.0, 0.0), (1.0, 1.0)]),
        ],
    )?;
    written.push(p);

    let p = file("pr");
    line_chart(
        &p,
        &format!("Precision–recall at {day}"),
        "recall",
        "precision",
        1.0,
        &[
            ("model", MODEL, pr_points(s)),
            ("base rate", CHANCE, vec![(0.0, base), (1.0, base)]),
        ],
    )?;
    written.push(p);

    let p = file("calibration");
    let bins: Vec<(f64, f64)> = calibration(&s.scores, &s.labels, 10)
        .iter()
        .filter_map(|b| Some((b.mean_score?, b.churn_rate?)))
        .collect();
    line_chart(
        &p,
        &format!("Reliability at {day}"),
        "mean predicted churn probability (10 bins)",
        "observed churn rate",
        1.0,
        &[
            ("model", MODEL, bins),
            ("perfectly calibrated", CHANCE, vec![(0.0, 0.0), (1.0, 1.0)]),
        ],
    )?;
    written.push(p);

    let p = file("gains");
    gains_chart(&p, day, s, base)?;
    written.push(p);

    let p = file("scores");
    histogram(&p, day, s)?;
    written.push(p);
    Ok(written)
}

fn gains_chart(path: &Path, day: &str, s: &CutoffScores, base: f64) -> PlotResult<()> {
    let gains = gains_points(s);
    let lift: Vec<(f64, f64)> = gains
        .iter()
        .filter(|(x, _)| *x >= 0.01)
        .map(|&(x, y)| (x, y / x))
        .collect();
    let max_lift = lift.iter().map(|p| p.1).fold(1.0f64, f64::max).ceil();
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(500);
    for (area, is_gains) in [(left, true), (right, false)] {
        let (title, y_desc, y_max) = if is_gains {
            (
                format!("Cumulative gains at {day}"),
                "share of churners captured",
                1.0,
            )
        } else {
            (
                format!("Lift at {day} (base rate {base:.2})"),
                "lift",
                max_lift,
            )
        };
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("share of users contacted (highest risk first)")
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        let (model, chance) = if is_gains {
            (gains.clone(), vec![(0.0, 0.0), (1.0, 1.0)])
        } else {
            (lift.clone(), vec![(0.0, 1.0), (1.0, 1.0)])
        };
        chart
            .draw_series(LineSeries::new(model, MODEL.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(chance, CHANCE.stroke_width(2)))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

fn histogram(path: &Path, day: &str, s: &CutoffScores) -> PlotResult<()> {
    const BINS: usize = 20;
    let mut counts = [[0usize; BINS]; 2];
    for (sc, &l) in s.scores.iter().zip(&s.labels) {
        let b = ((sc.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        counts[usize::from(l)][b] += 1;
    }
    let totals = [
        counts[0].iter().sum::<usize>().max(1) as f64,
        counts[1].iter().sum::<usize>().max(1) as f64,
    ];
    let share = |c: usize, b: usize| counts[c][b] as f64 / totals[c];
    let y_max = (0..BINS)
        .flat_map(|b| [share(0, b), share(1, b)])
        .fold(0.0f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Score distribution by label at {day}"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..y_max.max(0.01))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("churn score")
        .y_desc("share of the label's users")
        .draw()
        .map_err(err)?;
    for (c, color, name) in [(0usize, MODEL, "stayed"), (1usize, CHURN, "churned")] {
        let w = 1.0 / BINS as f64;
        chart
            .draw_series((0..BINS).map(|b| {
                let x0 = b as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, share(c, b))], color.mix(0.45).filled())
            }))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.mix(0.45).filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
