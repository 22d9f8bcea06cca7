//! The charts of `reap-stress`, drawn with [`plotters`] into SVG documents.
//!
//! * [`svg`] (`reap-stress --plot FILE.svg`): live objects over time (top) and each collection's
//!   pause over time on a log scale (bottom), with the workloads marked where they begin.
//! * [`compare_svg`] (`reap-stress --compare --plot FILE.svg`): each runtime's median time over
//!   reap's, per workload, on a log scale.
//!
//! Only plotters' SVG backend is used: its text is written as `<text>` elements for the viewer to
//! render, so no font library is needed to build or run this.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// What [`svg`] draws.
pub struct Series<'a> {
    /// (seconds since the run began, live objects).
    pub live: &'a [(f64, usize)],
    /// (seconds since the run began, pause in milliseconds).
    pub pauses: &'a [(f64, f64)],
    /// (seconds since the run began, workload name) where each workload starts.
    pub marks: &'a [(f64, String)],
}

/// What [`compare_svg`] draws: `ratios[w][r]` is runtime `runtimes[r]`'s median time over reap's
/// on workload `workloads[w]`, or `None` where it has none (it cannot run the workload, or reap
/// failed it).
pub struct Comparison<'a> {
    /// The workloads, in table order (the categories along the x axis).
    pub workloads: &'a [&'a str],
    /// The runtimes compared with reap, in table order (one series each).
    pub runtimes: &'a [&'a str],
    /// The ratios, one row per workload, one column per runtime.
    pub ratios: &'a [Vec<Option<f64>>],
}

const FONT: &str = "sans-serif";
/// Points per series at most: a long run has many thousands of collections.
const MAX_POINTS: usize = 2000;

/// The colours of the series, in order (matplotlib's "tab10").
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("cannot draw the chart: {e}")
}

/// A count as an axis label: 1,500,000 is "1.5M".
fn count_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

/// A number with at most two decimals and no trailing zeros: 0.25, 2, 1.5.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// The chart of a run as an SVG document: live objects over time on a linear axis, pauses in
/// milliseconds over time on a log axis, both with the workloads marked.
pub fn svg(series: &Series<'_>) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(300);
        let t_max = series
            .live
            .iter()
            .map(|p| p.0)
            .chain(series.pauses.iter().map(|p| p.0))
            .chain(series.marks.iter().map(|m| m.0))
            .fold(0.0_f64, f64::max)
            .max(1e-3);
        live_panel(&top, series, t_max)?;
        pause_panel(&bottom, series, t_max)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn live_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, s: &Series<'_>, t_max: f64) -> DrawResult {
    let live_max = s.live.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("live objects (peak {})", count_label(live_max)),
            (FONT, 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..live_max * 1.05)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run began")
        .y_desc("live objects")
        .x_label_formatter(&|t| trim(*t))
        .y_label_formatter(&|v| count_label(*v))
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    marks(&mut chart, s.marks, live_max * 1.05, true)?;
    let step = s.live.len().div_ceil(MAX_POINTS).max(1);
    chart
        .draw_series(LineSeries::new(
            s.live.iter().step_by(step).map(|&(t, n)| (t, n as f64)),
            PALETTE[0].stroke_width(1),
        ))
        .map_err(err)?;
    Ok(())
}

fn pause_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    s: &Series<'_>,
    t_max: f64,
) -> DrawResult {
    // A log axis has no zero: a pause too short for the clock is drawn at the axis's floor.
    let positive = || s.pauses.iter().map(|p| p.1).filter(|ms| *ms > 0.0);
    let max = positive().fold(0.0_f64, f64::max).max(1e-3);
    let min = positive().fold(f64::INFINITY, f64::min).min(max);
    let (lo, hi) = (min / 2.0, max * 2.0);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "collection pauses, ms, log scale ({} pauses, longest {} ms)",
                s.pauses.len(),
                trim_ms(max)
            ),
            (FONT, 18),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run began")
        .y_desc("pause (ms)")
        .x_label_formatter(&|t| trim(*t))
        .y_labels(12)
        .y_label_formatter(&|v| trim_ms(*v))
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    marks(&mut chart, s.marks, hi, false)?;
    // The longest pauses are what a reader looks for: keep every pause above 1% of the longest,
    // and a sample of the rest.
    let keep = s.pauses.len().div_ceil(MAX_POINTS).max(1);
    chart
        .draw_series(
            s.pauses
                .iter()
                .enumerate()
                .filter(|(i, (_, ms))| i % keep == 0 || *ms >= max / 100.0)
                .map(|(_, &(t, ms))| Circle::new((t, ms.max(lo)), 2, PALETTE[3].filled())),
        )
        .map_err(err)?;
    Ok(())
}

/// Milliseconds as a label, with as many decimals as small values need.
fn trim_ms(ms: f64) -> String {
    if ms >= 1.0 {
        trim(ms)
    } else {
        let s = format!("{ms:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A vertical line where each workload begins, named (in the top panel only) along the line.
fn marks<Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    marks: &[(f64, String)],
    y_top: f64,
    named: bool,
) -> DrawResult {
    let y_bottom = chart.y_range().start;
    for (t, name) in marks {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*t, y_bottom), (*t, y_top)],
                RGBColor(170, 170, 170).stroke_width(1),
            )))
            .map_err(err)?;
        if named {
            let style = (FONT, 12)
                .into_font()
                .transform(FontTransform::Rotate90)
                .color(&RGBColor(90, 90, 90));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*t, y_top)) + Text::new(name.clone(), (14, 4), style),
                ))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// The chart of `reap-stress --compare` as an SVG document: for each workload, each runtime's
/// median time over reap's as a point on a log axis, with reap's own (1×) as a line.
pub fn compare_svg(c: &Comparison<'_>) -> Result<String, String> {
    let n = c.workloads.len().max(1);
    let width = (160 * n as u32).max(900);
    let known = || c.ratios.iter().flatten().flatten().copied();
    let hi = known().fold(1.0_f64, f64::max) * 1.6;
    let lo = known().filter(|r| *r > 0.0).fold(1.0_f64, f64::min) / 1.6;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "median time of each runtime over reap's, per workload (log scale; lower is better for the runtime)",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), (lo..hi).log_scale())
            .map_err(err)?;
        let name_at = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                c.workloads
                    .get(i as usize)
                    .map_or(String::new(), |w| w.to_string())
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&name_at)
            .y_labels(15)
            .y_label_formatter(&|v| format!("{}x", trim(*v)))
            .x_desc("workload")
            .y_desc("time over reap's")
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 1.0), (n as f64 - 0.5, 1.0)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?
            .label("reap (1x)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1)));
        let k = c.runtimes.len().max(1) as f64;
        for (ri, rt) in c.runtimes.iter().enumerate() {
            let colour = PALETTE[ri % PALETTE.len()];
            // Side by side within each workload's slot, so that equal ratios stay apart.
            let dx = (ri as f64 - (k - 1.0) / 2.0) * (0.7 / k);
            let points = c.ratios.iter().enumerate().filter_map(|(wi, row)| {
                let r = row.get(ri).copied().flatten()?;
                (r > 0.0 && r.is_finite()).then_some((wi as f64 + dx, r))
            });
            chart
                .draw_series(points.map(|p| Circle::new(p, 5, colour.filled())))
                .map_err(err)?
                .label(*rt)
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(150, 150, 150))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of each `<text>` element.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                Some(
                    t.split_once('>')?
                        .1
                        .split_once("</text>")?
                        .0
                        .trim()
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn labels() {
        assert_eq!(count_label(1_500_000.0), "1.5M");
        assert_eq!(count_label(2000.0), "2k");
        assert_eq!(count_label(12.0), "12");
        assert_eq!(trim(0.25), "0.25");
        assert_eq!(trim_ms(0.0015), "0.0015");
    }

    #[test]
    fn a_run_chart_has_axes_with_tick_labels() {
        let live = [(0.0, 10), (0.5, 2000), (1.0, 500)];
        let pauses = [(0.1, 0.02), (0.6, 3.0), (0.9, 0.0)];
        let marks = [(0.0, "trees".to_string()), (0.5, "rings".to_string())];
        let svg = svg(&Series {
            live: &live,
            pauses: &pauses,
            marks: &marks,
        })
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for text in [
            "live objects (peak 2k)",
            "seconds since the run began",
            "pause (ms)",
            "trees",
            "rings",
            "2k",
            "0.5",
            "1",
        ] {
            assert!(texts.iter().any(|t| t == text), "{text} missing: {texts:?}");
        }
        assert!(texts.iter().any(|t| t.starts_with("collection pauses")));
    }

    #[test]
    fn an_empty_run_still_draws() {
        let svg = svg(&Series {
            live: &[],
            pauses: &[],
            marks: &[],
        })
        .unwrap();
        assert!(svg.contains("<text"));
    }

    #[test]
    fn a_comparison_chart_names_workloads_and_runtimes() {
        let svg = compare_svg(&Comparison {
            workloads: &["trees", "rings"],
            runtimes: &["Rc", "CPython"],
            ratios: &[vec![Some(0.9), Some(3.0)], vec![None, Some(12.0)]],
        })
        .unwrap();
        let texts = texts(&svg);
        for text in ["trees", "rings", "Rc", "CPython", "reap (1x)", "1x", "10x"] {
            assert!(texts.iter().any(|t| t == text), "{text} missing: {texts:?}");
        }
    }
}
