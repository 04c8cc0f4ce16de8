//! A standalone SVG picture of an rtpgen run: the latency distribution and the
//! throughput over time, written by hand (no plotting crate) so the report is one
//! self-contained file any browser opens.
//!
//! # Contract
//! - [`svg`] always returns a well-formed SVG document of [`WIDTH`] × [`HEIGHT`]
//!   pixels, whatever the input: a panel with nothing to draw (no latency samples,
//!   fewer than two points in time, only zeros) says "no data" instead.
//! - Non-finite values (NaN, ±inf) are ignored point by point; a bucket whose bound
//!   is not finite or not above the previous one is skipped. No number in the output
//!   is ever NaN or infinite.
//! - Axes run over "nice" values: tick steps are 1, 2 or 5 × 10^k and the axis ends
//!   on a tick, so a reader can interpolate by eye.
//! - Text (the title) is escaped for XML.
//!
//! Layout: the title on top; panel 1 the latency histogram with the p50 and p99
//! marked; panel 2 tx and rx packets/s (left axis) with the participant count (right
//! axis); when any loss was seen, a strip under it with loss %.

use std::fmt::Write as _;

/// One sample of the run's timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TimePoint {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Participants active at `t_s`.
    pub participants: u32,
    /// Packets per second sent by all participants.
    pub tx_pps: f64,
    /// Packets per second received by all participants.
    pub rx_pps: f64,
    /// Packets lost, in percent of those expected.
    pub loss_pct: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
}

/// Everything [`svg`] draws.
#[derive(Clone, Copy, Debug)]
pub struct PlotInput<'a> {
    pub title: &'a str,
    /// latency distribution: (bucket upper bound in ms, count), ascending
    pub latency_buckets: &'a [(f64, u64)],
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub timeline: &'a [TimePoint],
}

/// Picture size in pixels.
pub const WIDTH: f64 = 900.0;
pub const HEIGHT: f64 = 700.0;
/// Horizontal extent of every panel's plot area (room for axis labels each side).
const LEFT: f64 = 80.0;
const RIGHT: f64 = 820.0;
/// Vertical extents (top, bottom) of the plot areas.
const HIST: (f64, f64) = (80.0, 300.0);
const RATES: (f64, f64) = (380.0, 640.0);
const RATES_WITH_LOSS: (f64, f64) = (380.0, 540.0);
const LOSS: (f64, f64) = (575.0, 640.0);

const TX_COLOUR: &str = "#1f77b4";
const RX_COLOUR: &str = "#2ca02c";
const PARTICIPANTS_COLOUR: &str = "#7f7f7f";
const LOSS_COLOUR: &str = "#d62728";
const BAR_STYLE: &str = "class=\"bar\" fill=\"#6baed6\" stroke=\"#fff\" stroke-width=\"0.5\"";

/// The smallest step of the form 1, 2 or 5 × 10^k that is at least `raw`
/// (`raw` > 0 and finite; anything else gives 1).
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    // A small tolerance keeps 2.0000000001 (a float artefact) from becoming 5.
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// An axis over nice values: `lo` and `hi` are multiples of `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub step: f64,
}

impl Axis {
    /// The nice axis covering `[lo, hi]` with about `ticks` intervals (at least 1).
    /// A degenerate or non-finite range gives `[lo, lo + 1]` (or `[0, 1]`).
    pub fn covering(lo: f64, hi: f64, ticks: u32) -> Axis {
        let (lo, hi) = if lo.is_finite() && hi.is_finite() {
            (lo.min(hi), lo.max(hi))
        } else {
            (0.0, 1.0)
        };
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let step = nice_step((hi - lo) / f64::from(ticks.max(1)));
        let lo_tick = (lo / step * (1.0 + 1e-12)).floor();
        let hi_tick = (hi / step * (1.0 - 1e-12)).ceil();
        Axis {
            lo: lo_tick * step,
            hi: hi_tick.max(lo_tick + 1.0) * step,
            step,
        }
    }

    /// Tick values from `lo` to `hi` inclusive, computed by index so that errors do
    /// not accumulate.
    pub fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round() as i64;
        let first = (self.lo / self.step).round() as i64;
        (0..=n.clamp(0, 100))
            .map(|i| (first + i) as f64 * self.step)
            .collect()
    }

    /// The map from this axis onto the pixel interval `to`.
    pub fn onto(&self, to: (f64, f64)) -> Scale {
        Scale {
            from: (self.lo, self.hi),
            to,
        }
    }

    /// Tick label: as many decimals as the step needs, thousands as "k".
    pub fn label(&self, v: f64) -> String {
        let (v, step, suffix) = if self.step >= 1000.0 {
            (v / 1000.0, self.step / 1000.0, "k")
        } else {
            (v, self.step, "")
        };
        let decimals = (-step.log10().floor()).clamp(0.0, 9.0) as usize;
        if v.abs() < step * 1e-9 {
            return "0".into();
        }
        format!("{v:.decimals$}{suffix}")
    }
}

/// Linear map from a data interval to a pixel interval (either may be reversed, as
/// the y axis is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    pub from: (f64, f64),
    pub to: (f64, f64),
}

impl Scale {
    /// Pixel position of `v`. A zero-width data interval maps everything to the
    /// start of the pixel interval.
    pub fn map(&self, v: f64) -> f64 {
        let span = self.from.1 - self.from.0;
        if span == 0.0 || !span.is_finite() {
            return self.to.0;
        }
        self.to.0 + (v - self.from.0) / span * (self.to.1 - self.to.0)
    }
}

/// XML text/attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate for the output: one decimal, and never NaN/inf (0 instead; every
/// caller maps finite data onto finite pixel ranges, so this is a last guard).
fn px(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "0".into()
    }
}

/// A number for a label: `decimals` places, never NaN/inf.
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "?".into()
    }
}

/// The picture (see the module docs).
pub fn svg(input: &PlotInput<'_>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>",
        w = WIDTH,
        h = HEIGHT,
    );
    let bold = "text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\"";
    text(&mut s, (WIDTH / 2.0, 32.0), bold, input.title);
    histogram(&mut s, input);
    timeline(&mut s, input.timeline);
    s.push_str("</svg>\n");
    s
}

const MIDDLE: &str = "text-anchor=\"middle\"";

/// A `<text>` at `at` with extra attributes `attrs`; `content` is escaped.
fn text(s: &mut String, at: (f64, f64), attrs: &str, content: &str) {
    let (x, y) = (px(at.0), px(at.1));
    let _ = writeln!(
        s,
        "<text x=\"{x}\" y=\"{y}\" {attrs}>{}</text>",
        escape(content)
    );
}

/// A `<line>` from `a` to `b` with extra attributes `attrs`.
fn line(s: &mut String, a: (f64, f64), b: (f64, f64), attrs: &str) {
    let (x1, y1, x2, y2) = (px(a.0), px(a.1), px(b.0), px(b.1));
    let _ = writeln!(
        s,
        "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" {attrs}/>"
    );
}

/// A `<rect>` from corner `a` of size `size` with extra attributes; `inner` goes
/// between the tags (escaped), for a tooltip `<title>`.
fn rect(s: &mut String, a: (f64, f64), size: (f64, f64), attrs: &str, inner: Option<&str>) {
    let (x, y, w, h) = (px(a.0), px(a.1), px(size.0), px(size.1));
    let _ = write!(
        s,
        "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" {attrs}"
    );
    let _ = match inner {
        Some(t) => writeln!(s, "><title>{}</title></rect>", escape(t)),
        None => writeln!(s, "/>"),
    };
}

/// The frame of a plot area, with its heading above it if any.
fn frame(s: &mut String, heading: &str, (top, bottom): (f64, f64)) {
    if !heading.is_empty() {
        text(s, (LEFT, top - 10.0), "font-size=\"14\"", heading);
    }
    let size = (RIGHT - LEFT, bottom - top);
    rect(s, (LEFT, top), size, "fill=\"none\" stroke=\"#444\"", None);
}

fn no_data(s: &mut String, (top, bottom): (f64, f64)) {
    let at = ((LEFT + RIGHT) / 2.0, (top + bottom) / 2.0);
    text(
        s,
        at,
        "text-anchor=\"middle\" font-size=\"16\" fill=\"#888\"",
        "no data",
    );
}

/// Horizontal axis ticks and grid under a plot area.
fn x_axis(s: &mut String, axis: &Axis, x: &Scale, (top, bottom): (f64, f64), unit: &str) {
    for v in axis.ticks() {
        let xp = x.map(v);
        line(s, (xp, top), (xp, bottom + 4.0), "stroke=\"#ddd\"");
        text(s, (xp, bottom + 18.0), MIDDLE, &axis.label(v));
    }
    text(s, ((LEFT + RIGHT) / 2.0, bottom + 34.0), MIDDLE, unit);
}

/// Vertical axis ticks and labels on the left (`right == false`) or right side.
fn y_axis(s: &mut String, axis: &Axis, y: &Scale, right: bool, colour: &str) {
    let (x_text, anchor) = if right {
        (RIGHT + 6.0, "start")
    } else {
        (LEFT - 6.0, "end")
    };
    for v in axis.ticks() {
        let yp = y.map(v);
        if !right {
            line(s, (LEFT, yp), (RIGHT, yp), "stroke=\"#eee\"");
        }
        let attrs = format!("text-anchor=\"{anchor}\" fill=\"{colour}\"");
        text(s, (x_text, yp + 4.0), &attrs, &axis.label(v));
    }
}

/// Buckets that can be drawn: (lower bound, upper bound, count), skipping
/// non-finite or non-ascending bounds. The first bucket starts at 0 (latency is
/// never negative) unless its bound is negative.
fn valid_buckets(buckets: &[(f64, u64)]) -> Vec<(f64, f64, u64)> {
    let mut out = Vec::new();
    let mut prev: Option<f64> = None;
    for &(upper, count) in buckets {
        if !upper.is_finite() {
            continue;
        }
        let lower = match prev {
            Some(p) if upper > p => p,
            Some(_) => continue,
            None if upper > 0.0 => 0.0,
            None => upper - 1.0,
        };
        prev = Some(upper);
        out.push((lower, upper, count));
    }
    out
}

fn histogram(s: &mut String, input: &PlotInput<'_>) {
    let area = HIST;
    frame(s, "Latency distribution", area);
    let buckets: Vec<_> = valid_buckets(input.latency_buckets)
        .into_iter()
        .filter(|b| b.2 > 0)
        .collect();
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        no_data(s, area);
        return;
    };
    let max_count = buckets.iter().map(|b| b.2).max().unwrap_or(1);
    let xa = Axis::covering(first.0.min(0.0), last.1, 10);
    let ya = Axis::covering(0.0, max_count as f64, 5);
    let x = xa.onto((LEFT, RIGHT));
    let y = ya.onto((area.1, area.0));
    y_axis(s, &ya, &y, false, "#000");
    x_axis(s, &xa, &x, area, "latency (ms)");
    for &(lo, hi, count) in &buckets {
        let (x0, x1) = (x.map(lo), x.map(hi));
        let top = y.map(count as f64);
        let tip = format!("{}-{} ms: {count}", num(lo, 3), num(hi, 3));
        let size = ((x1 - x0).max(0.5), area.1 - top);
        rect(s, (x0, top), size, BAR_STYLE, Some(&tip));
    }
    // p50 labelled left of its line, p99 right of it, so close values stay legible;
    // a translucent box keeps the label readable over the bars.
    let marks = [
        ("p50", input.latency_p50_ms, "#e6550d", -1.0),
        ("p99", input.latency_p99_ms, LOSS_COLOUR, 1.0),
    ];
    for (name, value, colour, side) in marks {
        let Some(v) = value.filter(|v| v.is_finite() && (xa.lo..=xa.hi).contains(v)) else {
            continue;
        };
        let xp = x.map(v);
        let decimals = if v < 10.0 { 2 } else { 1 };
        let label = format!("{name} {} ms", num(v, decimals));
        let width = 7.0 * label.len() as f64 + 6.0;
        let (box_x, text_x, anchor) = if side < 0.0 {
            (xp - 4.0 - width, xp - 7.0, "end")
        } else {
            (xp + 4.0, xp + 7.0, "start")
        };
        let dashed = format!("stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"6 3\"");
        line(s, (xp, area.0), (xp, area.1), &dashed);
        let white = "fill=\"white\" fill-opacity=\"0.85\"";
        rect(s, (box_x, area.0 + 6.0), (width, 18.0), white, None);
        let attrs = format!("text-anchor=\"{anchor}\" fill=\"{colour}\"");
        text(s, (text_x, area.0 + 19.0), &attrs, &label);
    }
}

/// A polyline through the finite points of `pts`, split where a point is missing.
fn polyline(s: &mut String, pts: impl Iterator<Item = Option<(f64, f64)>>, style: &str) {
    let mut run: Vec<String> = Vec::new();
    let flush = |s: &mut String, run: &mut Vec<String>| {
        if !run.is_empty() {
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" {style} points=\"{}\"/>",
                run.join(" ")
            );
            run.clear();
        }
    };
    for p in pts {
        match p {
            Some((xp, yp)) if xp.is_finite() && yp.is_finite() => {
                run.push(format!("{},{}", px(xp), px(yp)))
            }
            _ => flush(s, &mut run),
        }
    }
    flush(s, &mut run);
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn legend(s: &mut String, entries: &[(&str, &str)], top: f64) {
    // Above the plot area, right of the panel heading: never over the data.
    let top = top - 24.0;
    let mut x = LEFT + 100.0;
    for (label, colour) in entries {
        let style = format!("stroke=\"{colour}\" stroke-width=\"3\"");
        line(s, (x, top + 14.0), (x + 20.0, top + 14.0), &style);
        text(s, (x + 25.0, top + 18.0), "", label);
        x += 35.0 + 7.0 * label.len() as f64;
    }
}

fn timeline(s: &mut String, points: &[TimePoint]) {
    let pts: Vec<&TimePoint> = points.iter().filter(|p| p.t_s.is_finite()).collect();
    let loss_max = pts
        .iter()
        .filter_map(|p| finite(p.loss_pct))
        .fold(0.0f64, f64::max);
    let area = if loss_max > 0.0 {
        RATES_WITH_LOSS
    } else {
        RATES
    };
    frame(s, "Throughput", area);
    let t_lo = pts.iter().map(|p| p.t_s).fold(f64::INFINITY, f64::min);
    let t_hi = pts.iter().map(|p| p.t_s).fold(f64::NEG_INFINITY, f64::max);
    let pps_max = pts
        .iter()
        .flat_map(|p| [p.tx_pps, p.rx_pps])
        .filter_map(finite)
        .fold(0.0f64, f64::max);
    let people_max = pts.iter().map(|p| p.participants).max().unwrap_or(0);
    let has_data = pps_max > 0.0 || people_max > 0 || loss_max > 0.0;
    if pts.len() < 2 || t_hi <= t_lo || !has_data {
        no_data(s, area);
        return;
    }
    let ta = Axis::covering(t_lo, t_hi, 10);
    let x = ta.onto((LEFT, RIGHT));
    let pa = Axis::covering(0.0, pps_max, 5);
    let y = pa.onto((area.1, area.0));
    let na = Axis::covering(0.0, f64::from(people_max), 5);
    let yn = na.onto((area.1, area.0));
    y_axis(s, &pa, &y, false, "#000");
    y_axis(s, &na, &yn, true, PARTICIPANTS_COLOUR);
    if loss_max > 0.0 {
        // The time labels go under the loss strip, which shares the time axis.
        for v in ta.ticks() {
            let xp = x.map(v);
            line(s, (xp, area.0), (xp, area.1), "stroke=\"#ddd\"");
        }
    } else {
        x_axis(s, &ta, &x, area, "time (s)");
    }
    text(
        s,
        (LEFT - 6.0, area.0 - 10.0),
        "text-anchor=\"end\"",
        "packets/s",
    );
    let grey = format!("fill=\"{PARTICIPANTS_COLOUR}\"");
    text(s, (RIGHT + 6.0, area.0 - 10.0), &grey, "participants");
    // Participants as a step line: the count holds until the next sample.
    let steps = pts.iter().enumerate().flat_map(|(i, p)| {
        let prev = pts[i.saturating_sub(1)].participants;
        [prev, p.participants].map(|n| Some((x.map(p.t_s), yn.map(f64::from(n)))))
    });
    let dashed =
        format!("stroke=\"{PARTICIPANTS_COLOUR}\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"");
    polyline(s, steps, &dashed);
    for (tx, colour) in [(true, TX_COLOUR), (false, RX_COLOUR)] {
        let rate = |p: &TimePoint| if tx { p.tx_pps } else { p.rx_pps };
        let pts = pts
            .iter()
            .map(|p| finite(rate(p)).map(|v| (x.map(p.t_s), y.map(v))));
        polyline(s, pts, &format!("stroke=\"{colour}\" stroke-width=\"2\""));
    }
    let mut entries = vec![
        ("tx packets/s", TX_COLOUR),
        ("rx packets/s", RX_COLOUR),
        ("participants (right axis)", PARTICIPANTS_COLOUR),
    ];
    if loss_max > 0.0 {
        entries.push(("loss %", LOSS_COLOUR));
    }
    legend(s, &entries, area.0);
    if loss_max > 0.0 {
        loss_strip(s, &pts, &ta, &x, loss_max);
    }
}

/// Loss % over time, in its own strip under the throughput panel.
fn loss_strip(s: &mut String, pts: &[&TimePoint], ta: &Axis, x: &Scale, loss_max: f64) {
    let area = LOSS;
    frame(s, "", area);
    let red = format!("text-anchor=\"end\" fill=\"{LOSS_COLOUR}\"");
    text(s, (LEFT - 6.0, area.0 - 6.0), &red, "loss %");
    let la = Axis::covering(0.0, loss_max, 2);
    let y = la.onto((area.1, area.0));
    y_axis(s, &la, &y, false, LOSS_COLOUR);
    x_axis(s, ta, x, area, "time (s)");
    polyline(
        s,
        pts.iter()
            .map(|p| finite(p.loss_pct).map(|v| (x.map(p.t_s), y.map(v)))),
        &format!("stroke=\"{LOSS_COLOUR}\" stroke-width=\"1.5\""),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that tags balance and that `&` only starts an entity and `>` only ends
    /// a tag: enough to catch the mistakes a hand-written SVG can make.
    fn well_formed(doc: &str) -> Result<(), String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = doc;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            let len = rest[open..].find('>').ok_or("unclosed tag")?;
            let tag = &rest[open + 1..open + len];
            rest = &rest[open + len + 1..];
            check_text(tag)?;
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("</{name}> without opening"))?;
                if top != name {
                    return Err(format!("<{top}> closed by </{name}>"));
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or(""));
            }
        }
        check_text(rest)?;
        match stack.is_empty() {
            true => Ok(()),
            false => Err(format!("unclosed: {stack:?}")),
        }
    }

    fn check_text(t: &str) -> Result<(), String> {
        let entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"];
        let bare_amp = t
            .match_indices('&')
            .any(|(i, _)| !entities.iter().any(|e| t[i..].starts_with(e)));
        match bare_amp || t.contains('>') {
            true => Err(format!("bare & or > in {t:?}")),
            false => Ok(()),
        }
    }

    fn point(t_s: f64, participants: u32, tx: f64, rx: f64, loss: f64) -> TimePoint {
        TimePoint {
            t_s,
            participants,
            tx_pps: tx,
            rx_pps: rx,
            loss_pct: loss,
            latency_p50_ms: None,
            latency_p99_ms: None,
        }
    }

    fn input<'a>(buckets: &'a [(f64, u64)], timeline: &'a [TimePoint]) -> PlotInput<'a> {
        PlotInput {
            title: "run",
            latency_buckets: buckets,
            latency_p50_ms: Some(21.0),
            latency_p99_ms: Some(48.0),
            timeline,
        }
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        let raw = [
            0.7,
            1.0,
            1.2,
            2.0,
            3.0,
            7.0,
            0.013,
            2500.0,
            19.4,
            0.0,
            f64::NAN,
            -3.0,
        ];
        let want = [
            1.0, 1.0, 2.0, 2.0, 5.0, 10.0, 0.02, 5000.0, 20.0, 1.0, 1.0, 1.0,
        ];
        for (raw, want) in raw.into_iter().zip(want) {
            let got = nice_step(raw);
            assert!(
                (got - want).abs() < want * 1e-9,
                "{raw} -> {got}, want {want}"
            );
        }
    }

    #[test]
    fn an_axis_ends_on_ticks_and_labels_them_with_the_decimals_its_step_needs() {
        let a = Axis::covering(0.0, 97.0, 5);
        assert_eq!(
            a,
            Axis {
                lo: 0.0,
                hi: 100.0,
                step: 20.0
            }
        );
        assert_eq!(a.ticks(), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let b = Axis::covering(0.3, 1.27, 4);
        assert_eq!(b.step, 0.5);
        assert_eq!((b.lo, b.hi), (0.0, 1.5));
        assert_eq!(b.label(0.5), "0.5");
        let exact = Axis::covering(0.0, 10.0, 10);
        assert_eq!((exact.lo, exact.hi, exact.step), (0.0, 10.0, 1.0));
        let big = Axis::covering(0.0, 180_000.0, 4);
        assert_eq!(big.step, 50_000.0);
        assert_eq!(big.label(150_000.0), "150k");
        let degenerate = Axis::covering(5.0, 5.0, 5);
        assert!(degenerate.hi > degenerate.lo);
        let nan = Axis::covering(f64::NAN, 3.0, 5);
        assert!(nan.lo.is_finite() && nan.hi.is_finite());
    }

    #[test]
    fn scales_map_the_data_interval_onto_the_pixel_interval() {
        let x = Axis::covering(0.0, 100.0, 5).onto((80.0, 820.0));
        assert_eq!(
            (x.map(0.0), x.map(25.0), x.map(100.0)),
            (80.0, 265.0, 820.0)
        );
        let y = Axis::covering(0.0, 10.0, 5).onto((300.0, 80.0));
        assert_eq!(y.map(5.0), 190.0);
        let flat = Scale {
            from: (3.0, 3.0),
            to: (1.0, 2.0),
        };
        assert_eq!(flat.map(3.0), 1.0);
    }

    #[test]
    fn the_last_timeline_point_lands_in_the_top_right_corner_when_it_is_the_maximum() {
        // Time 0..10 s and 1000 pps are nice already, so the axes end exactly there.
        let tl = [
            point(0.0, 1, 0.0, 0.0, 0.0),
            point(10.0, 2, 1000.0, 500.0, 0.0),
        ];
        let doc = svg(&input(&[], &tl));
        let corner = format!("{},{}", px(RIGHT), px(RATES.0));
        let origin = format!("{},{}", px(LEFT), px(RATES.1));
        let tx_line = doc
            .lines()
            .find(|l| l.contains(TX_COLOUR) && l.starts_with("<polyline"))
            .expect("a tx polyline");
        assert!(
            tx_line.contains(&format!("points=\"{origin} {corner}\"")),
            "{tx_line}"
        );
        // rx 500 of 1000: half way up.
        let mid = format!("{},{}", px(RIGHT), px((RATES.0 + RATES.1) / 2.0));
        assert!(doc.contains(&mid));
    }

    #[test]
    fn there_is_one_bar_per_non_empty_bucket() {
        let buckets = [
            (5.0, 0),
            (10.0, 3),
            (20.0, 10),
            (40.0, 0),
            (80.0, 1),
            (160.0, 0),
        ];
        let doc = svg(&input(&buckets, &[]));
        assert_eq!(doc.matches("class=\"bar\"").count(), 3);
        assert!(doc.contains("p50 21.0 ms") && doc.contains("p99 48.0 ms"));
        well_formed(&doc).unwrap();
    }

    #[test]
    fn empty_or_broken_inputs_say_no_data_and_never_print_nan() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let broken = [point(nan, 1, nan, inf, nan), point(1.0, 0, -inf, nan, inf)];
        let zeros = [point(0.0, 0, 0.0, 0.0, 0.0), point(5.0, 0, 0.0, 0.0, 0.0)];
        let one = [point(0.0, 3, 50.0, 50.0, 0.0)];
        type Case<'a> = (&'a [(f64, u64)], &'a [TimePoint]);
        let cases: [Case<'_>; 5] = [
            (&[], &[]),
            (&[(nan, 3), (inf, 4), (10.0, 0)], &broken),
            (&[(1.0, 0), (2.0, 0)], &zeros),
            (&[(3.0, 5), (2.0, 5), (nan, 1)], &one),
            (&[(-inf, 1), (0.0, 0)], &broken[1..]),
        ];
        for (i, (buckets, tl)) in cases.into_iter().enumerate() {
            let mut inp = input(buckets, tl);
            inp.latency_p50_ms = Some(nan);
            inp.latency_p99_ms = Some(inf);
            let doc = svg(&inp);
            assert!(
                !doc.contains("NaN") && !doc.contains("inf"),
                "case {i}: {doc}"
            );
            well_formed(&doc).unwrap_or_else(|e| panic!("case {i}: {e}"));
            // The timeline panel is always empty here; the histogram only in case 3.
            let want = if i == 3 { 1 } else { 2 };
            assert_eq!(doc.matches(">no data<").count(), want, "case {i}");
        }
    }

    #[test]
    fn the_title_is_escaped() {
        let mut inp = input(&[], &[]);
        inp.title = "<b> & \"quotes\" \u{1}";
        let doc = svg(&inp);
        assert!(doc.contains("&lt;b&gt; &amp; &quot;quotes&quot; \u{fffd}"));
        well_formed(&doc).unwrap();
    }

    #[test]
    fn a_realistic_run_renders_all_series_and_the_loss_strip() {
        let buckets: Vec<(f64, u64)> = (1..=60)
            .map(|i| {
                let ms = f64::from(i);
                let c = (2000.0 * (-(ms - 22.0).powi(2) / 60.0).exp()) as u64;
                (ms, c + u64::from(i > 40 && i % 7 == 0))
            })
            .collect();
        let tl: Vec<TimePoint> = (0..=120)
            .map(|i| {
                let t = f64::from(i) * 0.5;
                let people = (i / 4).min(20);
                let tx = f64::from(people) * 50.0;
                let loss = if (60..70).contains(&i) { 2.5 } else { 0.0 };
                point(
                    t,
                    people,
                    tx,
                    tx * f64::from(people.saturating_sub(1)) * (1.0 - loss / 100.0),
                    loss,
                )
            })
            .collect();
        let doc = svg(&PlotInput {
            title: "rtpgen: 20 participants vs 127.0.0.1:4000 & friends",
            latency_buckets: &buckets,
            latency_p50_ms: Some(22.3),
            latency_p99_ms: Some(41.7),
            timeline: &tl,
        });
        well_formed(&doc).unwrap();
        assert!(!doc.contains("NaN"));
        assert_eq!(
            doc.matches("<polyline").count(),
            4,
            "participants, tx, rx, loss"
        );
        assert!(doc.contains(">loss %<") && !doc.contains("no data"));
        std::fs::write("/tmp/rtpgen-example.svg", &doc).expect("writing the example to /tmp");
    }
}
