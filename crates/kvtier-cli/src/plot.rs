//! Minimal SVG line charts (no dependency): hit rate per tier over a replay,
//! hit rate against capacity for a sweep.

use std::fmt::Write;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points (x, y), x ascending.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// How the x axis maps values to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XScale {
    /// Proportional to the value.
    Linear,
    /// Proportional to the value's logarithm (values must be positive).
    Log,
}

/// Round tick values in `[lo, hi]`: multiples of 1, 2 or 5 x 10^k, about
/// `n` of them.
pub fn linear_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi <= lo || n == 0 {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Round tick values in `[lo, hi]` (both positive) for a log axis: 1, 2
/// and 5 x 10^k, or only the powers of ten when that would be more than
/// 12 ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if lo <= 0.0 || hi < lo {
        return vec![];
    }
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let pick = |ms: &[f64]| -> Vec<f64> {
        (k0..=k1)
            .flat_map(|k| ms.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let t = pick(&[1.0, 2.0, 5.0]);
    if t.len() > 12 {
        pick(&[1.0])
    } else {
        t
    }
}

/// Render a line chart as a standalone SVG document (linear x axis).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    line_chart_scaled(title, x_label, y_label, series, XScale::Linear)
}

/// [`line_chart`] with the x axis in `scale`; a log scale falls back to
/// linear if a value is not positive.
pub fn line_chart_scaled(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    scale: XScale,
) -> String {
    let (w, h) = (720.0, 440.0);
    let (l, r, t, b) = (70.0, 170.0, 40.0, 55.0);
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 {
        1.0
    } else {
        (y1 * 1.1).min(1.0).max(y1)
    };
    let log = scale == XScale::Log && x0 > 0.0;
    let fx = |x: f64| if log { x.ln() } else { x };
    let px = |x: f64| l + (fx(x) - fx(x0)) / (fx(x1) - fx(x0)) * (w - l - r);
    let py = |y: f64| h - b - y / y1 * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (l + w - r) / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let yv = y1 * i as f64 / 5.0;
        let y = py(yv);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{yv:.3}</text>"##,
            w - r,
            l - 6.0,
            y + 4.0
        );
    }
    let ticks = if log {
        log_ticks(x0, x1)
    } else {
        linear_ticks(x0, x1, 5)
    };
    for xv in ticks {
        let x = px(xv);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="black"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            h - b,
            h - b + 4.0,
            h - b + 18.0,
            fmt_num(xv)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#,
        h - b,
        w - r,
        h - b,
        h - b
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (l + w - r) / 2.0,
        h - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        (t + h - b) / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        if se.points.len() <= 40 {
            for &(x, y) in &se.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                    px(x),
                    py(y)
                );
            }
        }
        let ly = t + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            esc(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A tick label: thousands separated (`64,000`), fractions to 2 places.
fn fmt_num(v: f64) -> String {
    if v.fract() != 0.0 && v.abs() < 1000.0 {
        return format!("{v:.2}");
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_looking_svg() {
        let svg = line_chart(
            "t <x>",
            "x",
            "y",
            &[Series {
                label: "a".into(),
                points: vec![(0.0, 0.1), (10.0, 0.3)],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;x&gt;"));
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            linear_ticks(0.0, 20_000.0, 5),
            vec![0.0, 5000.0, 10_000.0, 15_000.0, 20_000.0]
        );
        assert_eq!(
            linear_ticks(1000.0, 6000.0, 5),
            vec![1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0]
        );
        assert_eq!(
            log_ticks(1000.0, 64_000.0),
            vec![1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 50_000.0]
        );
        assert_eq!(log_ticks(1.0, 1e9).len(), 10, "only powers of ten");
        assert_eq!(fmt_num(64_000.0), "64,000");
        assert_eq!(fmt_num(182_790.0), "182,790");
        assert_eq!(fmt_num(0.25), "0.25");
    }

    #[test]
    fn log_axis_spaces_decades_evenly() {
        let series = [Series {
            label: "a".into(),
            points: vec![(1000.0, 0.1), (10_000.0, 0.2), (100_000.0, 0.3)],
        }];
        let svg = line_chart_scaled("t", "x", "y", &series, XScale::Log);
        let xs: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<circle"))
            .map(|l| l.split('"').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3);
        assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() < 0.2, "{xs:?}");
        assert!(svg.contains(">10,000<"), "a round tick is labelled");
    }
}
