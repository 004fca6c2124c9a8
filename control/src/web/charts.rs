//! Charts for the console's overview, drawn on the server as inline SVG
//! (no script, no style attribute: the Content-Security-Policy holds).
//! Each chart is a `figure` with a caption, an SVG that says what it shows
//! to screen readers (`role="img"`, `title`, `desc`), every value written
//! next to its bar, and the same numbers as a table under "As a table", so
//! colour is never the only signal. Pure: values in, markup out.

use maud::{html, Markup};

use super::layout::shown;

/// One bar: its label, its value, and what the value says in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// What the bar is (a resource, a code).
    pub label: String,
    /// Its length.
    pub value: i64,
    /// The value as written next to the bar (`12`, `2 min`).
    pub text: String,
}

const WIDTH: i64 = 640;
const LABEL_WIDTH: i64 = 200;
const ROW: i64 = 26;

/// Bar length in pixels for `value` out of `max` over `span` pixels.
pub fn scaled(value: i64, max: i64, span: i64) -> i64 {
    if max <= 0 || value <= 0 {
        return 0;
    }
    (value.saturating_mul(span) / max).clamp(1, span)
}

/// Horizontal bars, one per row.
pub fn bars(id: &str, title: &str, description: &str, rows: &[Bar], empty: &str) -> Markup {
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0);
    // Room after the longest bar for its value in words.
    let span = WIDTH - LABEL_WIDTH - 180;
    let height = ROW * rows.len() as i64 + 8;
    html! {
        figure.chart {
            figcaption id=(format!("{id}-title")) { (title) }
            @if rows.is_empty() {
                p.empty { (empty) }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" role="img" width=(WIDTH) height=(height)
                    viewBox=(format!("0 0 {WIDTH} {height}")) aria-labelledby=(format!("{id}-svg-title {id}-svg-desc")) {
                    title id=(format!("{id}-svg-title")) { (title) }
                    desc id=(format!("{id}-svg-desc")) { (description) }
                    @for (i, r) in rows.iter().enumerate() {
                        @let y = i as i64 * ROW + 4;
                        @let w = scaled(r.value, max, span);
                        text x=(LABEL_WIDTH - 8) y=(y + 16) text-anchor="end" font-size="13" fill="#0b0c0c" { (clip(&r.label)) }
                        rect x=(LABEL_WIDTH) y=(y + 2) width=(w) height=(ROW - 8) fill="#1d70b8" {
                            title { (shown(&r.label)) ": " (r.text) }
                        }
                        text x=(LABEL_WIDTH + w + 6) y=(y + 16) font-size="13" fill="#0b0c0c" { (r.text) }
                    }
                }
                (table(&["", "value"], rows.iter().map(|r| vec![shown(&r.label), r.text.clone()])))
            }
        }
    }
}

/// A label short enough for the chart (the table shows it whole).
fn clip(label: &str) -> String {
    let shown = shown(label);
    if shown.chars().count() <= 26 {
        return shown;
    }
    let mut cut: String = shown.chars().take(25).collect();
    cut.push('…');
    cut
}

/// One day's counts per series, for [`stacked_days`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// The day, as its label (`2026-12-01`).
    pub label: String,
    /// Count per series, in the order of the series.
    pub counts: Vec<i64>,
}

/// A series of [`stacked_days`]: its name and colour.
pub struct Series<'a> {
    /// Its name (shown in the legend and the table).
    pub name: &'a str,
    /// Its fill.
    pub colour: &'a str,
}

/// Vertical bars per day, each stacked by series, with a legend.
pub fn stacked_days(id: &str, title: &str, description: &str, series: &[Series<'_>], days: &[Day]) -> Markup {
    let height: i64 = 220;
    let plot = height - 40;
    let max = days.iter().map(|d| d.counts.iter().sum::<i64>()).max().unwrap_or(0);
    let slot = if days.is_empty() {
        0
    } else {
        (WIDTH - 40) / days.len() as i64
    };
    let bar = (slot - 2).clamp(1, 40);
    let head: Vec<&str> = std::iter::once("day").chain(series.iter().map(|s| s.name)).collect();
    html! {
        figure.chart {
            figcaption id=(format!("{id}-title")) { (title) }
            @if days.is_empty() {
                p.empty { "No requests in the period." }
            } @else {
                ul.legend {
                    @for s in series {
                        li { svg width="12" height="12" aria-hidden="true" { rect width="12" height="12" fill=(s.colour) {} } " " (s.name) }
                    }
                }
                svg xmlns="http://www.w3.org/2000/svg" role="img" width=(WIDTH) height=(height)
                    viewBox=(format!("0 0 {WIDTH} {height}")) aria-labelledby=(format!("{id}-svg-title {id}-svg-desc")) {
                    title id=(format!("{id}-svg-title")) { (title) }
                    desc id=(format!("{id}-svg-desc")) { (description) }
                    text x="0" y="12" font-size="12" fill="#0b0c0c" { (max) }
                    line x1="36" y1=(plot) x2=(WIDTH) y2=(plot) stroke="#0b0c0c" {}
                    @for (i, d) in days.iter().enumerate() {
                        @let x = 40 + i as i64 * slot;
                        @let tops = stack(&d.counts, max, plot - 16);
                        @for (k, (top, h)) in tops.iter().enumerate() {
                            @if *h > 0 {
                                rect x=(x) y=(plot - top) width=(bar) height=(h) fill=(series.get(k).map_or("#505a5f", |s| s.colour)) {
                                    title { (d.label) ", " (series.get(k).map_or("", |s| s.name)) ": " (d.counts[k]) }
                                }
                            }
                        }
                    }
                    @if let (Some(first), Some(last)) = (days.first(), days.last()) {
                        text x="40" y=(height - 8) font-size="12" fill="#0b0c0c" { (first.label) }
                        text x=(WIDTH) y=(height - 8) font-size="12" text-anchor="end" fill="#0b0c0c" { (last.label) }
                    }
                }
                (table(&head, days.iter().map(|d| {
                    let mut row = vec![d.label.clone()];
                    row.extend(d.counts.iter().map(i64::to_string));
                    row
                })))
            }
        }
    }
}

/// Each series' segment of one stacked bar: (top above the axis, height),
/// in pixels, scaled so that `max` fills `span`.
pub fn stack(counts: &[i64], max: i64, span: i64) -> Vec<(i64, i64)> {
    let mut below = 0;
    let mut out = Vec::with_capacity(counts.len());
    for c in counts {
        let top_count = below + c.max(&0);
        let top = if max > 0 { top_count * span / max } else { 0 };
        let bottom = if max > 0 { below * span / max } else { 0 };
        out.push((top, top - bottom));
        below = top_count;
    }
    out
}

/// The chart's numbers as a table, folded away.
fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Markup {
    html! {
        details {
            summary { "As a table" }
            table {
                thead { tr { @for h in head { th scope="col" { (h) } } } }
                tbody { @for row in rows { tr { @for cell in row { td { (cell) } } } } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_a_nonzero_value_is_never_invisible() {
        assert_eq!(scaled(50, 100, 300), 150);
        assert_eq!(scaled(100, 100, 300), 300);
        assert_eq!(scaled(1, 1_000_000, 300), 1);
        assert_eq!(scaled(0, 100, 300), 0);
        assert_eq!(scaled(5, 0, 300), 0);
    }

    #[test]
    fn stacked_segments_sit_on_each_other() {
        assert_eq!(stack(&[2, 1, 1], 4, 100), vec![(50, 50), (75, 25), (100, 25)]);
        assert_eq!(stack(&[0, 3], 3, 90), vec![(0, 0), (90, 90)]);
        assert_eq!(stack(&[0], 0, 90), vec![(0, 0)]);
    }

    #[test]
    fn charts_say_what_they_show_and_carry_their_numbers_as_text() {
        let rows = [
            Bar {
                label: "payments-api".into(),
                value: 7,
                text: "7".into(),
            },
            Bar {
                label: "<b>\u{202e}x".into(),
                value: 1,
                text: "1".into(),
            },
        ];
        let out = bars("req", "Most requested", "Requests per resource", &rows, "none").into_string();
        assert!(out.contains(r#"role="img""#));
        assert!(out.contains("<desc id=\"req-svg-desc\">Requests per resource</desc>"));
        assert!(out.contains("<td>payments-api</td><td>7</td>"));
        assert!(!out.contains("<b>"), "labels are escaped");
        assert!(!out.contains('\u{202e}'), "bidi controls are shown, not applied");
        assert!(!out.contains("style="), "no inline style (CSP)");
        let none = bars("x", "t", "d", &[], "Nothing yet.").into_string();
        assert!(none.contains("Nothing yet."));
    }
}
