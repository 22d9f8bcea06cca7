//! A small SVG chart for `reap-stress --plot`: live objects over time (top) and collection pauses
//! over time (bottom), with the workloads marked. No dependencies: the SVG is written by hand.

use std::fmt::Write;

/// What to draw.
pub struct Series<'a> {
    /// (seconds since the run began, live objects).
    pub live: &'a [(f64, usize)],
    /// (seconds since the run began, pause in milliseconds).
    pub pauses: &'a [(f64, f64)],
    /// (seconds since the run began, workload name) where each workload starts.
    pub marks: &'a [(f64, String)],
}

const W: f64 = 960.0;
const H: f64 = 600.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const PANEL: f64 = 200.0;
const TOP1: f64 = 40.0;
const TOP2: f64 = 300.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub fn svg(series: &Series<'_>) -> String {
    let t_max = series
        .live
        .iter()
        .map(|p| p.0)
        .chain(series.pauses.iter().map(|p| p.0))
        .fold(0.0_f64, f64::max)
        .max(1e-6);
    let live_max = series.live.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let pause_max = series
        .pauses
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    for (top, title) in [
        (TOP1, format!("live objects (max {live_max:.0})")),
        (TOP2, format!("collection pauses, ms (max {pause_max:.2})")),
    ] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
            W - LEFT - RIGHT
        );
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{}">{}</text>"##,
            top - 8.0,
            escape(&title)
        );
    }
    for (t, name) in series.marks {
        let xx = x(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP1}" x2="{xx:.1}" y2="{}" stroke="#ddd"/><text x="{:.1}" y="{}" fill="#666" transform="rotate(90 {:.1} {})">{}</text>"##,
            TOP2 + PANEL,
            xx + 3.0,
            TOP2 + PANEL + 8.0,
            xx + 3.0,
            TOP2 + PANEL + 8.0,
            escape(name)
        );
    }
    // At most about 2,000 points a series: a long run has many thousands of collections.
    let step = |n: usize| n.div_ceil(2000).max(1);
    let mut path = String::new();
    for (i, (t, live)) in series
        .live
        .iter()
        .step_by(step(series.live.len()))
        .enumerate()
    {
        let y = TOP1 + PANEL - PANEL * (*live as f64) / live_max;
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            x(*t),
            y
        );
    }
    let _ = writeln!(s, r##"<path d="{path}" fill="none" stroke="#1f77b4"/>"##);
    // The longest pauses are what a reader looks for: keep every pause above 1% of the maximum,
    // and a sample of the rest.
    let keep = step(series.pauses.len());
    for (i, (t, ms)) in series.pauses.iter().enumerate() {
        if i % keep != 0 && *ms < pause_max / 100.0 {
            continue;
        }
        let y = TOP2 + PANEL - PANEL * ms / pause_max;
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{y:.1}" r="1.6" fill="#d62728"/>"##,
            x(*t)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="end">{t_max:.2} s</text>"##,
        W - RIGHT,
        H - 8.0
    );
    s.push_str("</svg>\n");
    s
}
