//! The one-page HTML summary of an audit: inline CSS and inline SVG only, no script, nothing
//! fetched (a Content-Security-Policy of `default-src 'none'` says so to the browser too), no
//! image pixels and no input file names, because the page is meant to travel. Every piece of text
//! that comes from the report or the file system is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write};

use super::{Audit, Finding};
use crate::certify::CertificateKind;
use crate::records::report::{ReportRow, Status, StatusCounts};

/// Findings listed on the page; the rest are counted.
const LISTED_FINDINGS: usize = 200;
const HISTOGRAM_BINS: usize = 30;

const CERTIFIED: &str = "#2e7d32";
const FAILED: &str = "#c62828";
const ERROR: &str = "#6a1b9a";
const SKIPPED: &str = "#757575";

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}\
main{max-width:1120px;margin:0 auto;padding:24px}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}\
.sub{color:#5b616b;margin:0 0 16px;font-size:14px}\
.verdict{padding:14px 18px;border-radius:8px;font-size:18px;font-weight:600;margin-bottom:18px;color:#fff}\
.clean{background:#2e7d32}.dirty{background:#c62828}\
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:18px}\
.card{background:#fff;border-radius:8px;padding:12px 16px;min-width:130px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
.card b{display:block;font-size:22px}.card span{color:#5b616b;font-size:13px}\
section{background:#fff;border-radius:8px;padding:16px 18px;margin-bottom:18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
table{border-collapse:collapse;width:100%;font-size:14px}\
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e5e8;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}\
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}.muted{color:#5b616b}\
ul{margin:0;padding-left:20px}li{margin:3px 0;font-size:14px}\
.kind{display:inline-block;background:#fdecea;color:#c62828;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;margin-right:6px}\
.swatch{display:inline-block;width:11px;height:11px;margin:0 4px 0 8px;vertical-align:-1px}\
svg text{font-family:system-ui,sans-serif;font-size:12px;fill:#1d1f23}\
footer{color:#5b616b;font-size:12px;text-align:center;padding:8px}";

/// `text` escaped for HTML text and attribute values. `:` is escaped too, so no user text can
/// form a URL scheme in the page source.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            ':' => out.push_str("&#58;"),
            c if c.is_control() => out.push_str(&escape(&c.escape_default().to_string())),
            c => out.push(c),
        }
    }
    out
}

/// The page for `audit`.
pub fn render(audit: &Audit) -> String {
    let mut page = String::new();
    // Writing into a String cannot fail.
    let _ = write_page(&mut page, audit);
    page
}

fn write_page(out: &mut String, audit: &Audit) -> fmt::Result {
    let name = audit
        .report
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rows: Vec<&ReportRow> = audit.rows().collect();
    let counts = StatusCounts::of(rows.iter().copied());

    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<meta name=\"viewport\" content=\"width=device-width\">\
<title>boomerang audit of {}</title><style>{STYLE}</style></head><body><main>\n",
        escape(&name)
    )?;
    writeln!(
        out,
        "<h1>Audit of {}</h1><p class=\"sub\">{} rows &middot; boomerang {} &middot; chain head <code>{}</code></p>",
        escape(&name),
        audit.entries.len(),
        escape(env!("CARGO_PKG_VERSION")),
        escape(&audit.chain_head)
    )?;
    match audit.findings.len() {
        0 => writeln!(
            out,
            "<div class=\"verdict clean\">Clean: every check made passed ({} not made, listed below)</div>",
            audit.not_checked.len()
        )?,
        n => writeln!(
            out,
            "<div class=\"verdict dirty\">{n} finding{}: this run does not verify</div>",
            if n == 1 { "" } else { "s" }
        )?,
    }

    write_cards(out, audit, &rows, &counts)?;
    write_levels(out, &rows, &counts)?;
    // The charts draw the rows' own numbers: say so, as the cards do for times and the rate.
    let distances = rows
        .iter()
        .filter(|r| r.distance.is_some_and(f32::is_finite))
        .count();
    writeln!(
        out,
        "<section><h2>Distances between input and output identities</h2><p class=\"sub\">As the rows state them: {} of {distances} re-scored by this audit{}.</p>",
        audit.rescored.len(),
        if audit.rescored.is_empty() {
            " (unverified: give --recompute N)"
        } else {
            ""
        }
    )?;
    write_histogram(out, &rows)?;
    out.push_str("</section>\n<section><h2>Attempts per image</h2><p class=\"sub\">As the rows state them (unverified).</p>\n");
    write_attempts(out, &rows)?;
    out.push_str("</section>\n");
    write_findings(out, audit)?;
    write_hashes(out, audit, &rows)?;
    writeln!(
        out,
        "<footer>Written by <code>boomerang audit</code>. This page holds no image pixels and no input file names; output paths appear only in findings.</footer>\n</main></body></html>"
    )
}

fn write_cards(
    out: &mut String,
    audit: &Audit,
    rows: &[&ReportRow],
    counts: &StatusCounts,
) -> fmt::Result {
    out.push_str("<div class=\"cards\">");
    let card = |out: &mut String, value: &str, label: &str| {
        write!(
            out,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            escape(value),
            escape(label)
        )
    };
    card(out, &counts.total().to_string(), "rows")?;
    for status in Status::ALL {
        write!(
            out,
            "<div class=\"card\" style=\"border-left:5px solid {}\"><b>{}</b><span>{status}</span></div>",
            status_colour(status),
            count_of(counts, status)
        )?;
    }
    let reid = audit.reidentification.as_ref();
    let rate = reid.map_or_else(|| "n/a".to_string(), |r| format!("{:.2} %", r.rate * 100.0));
    let mut label = match reid.and_then(|r| r.chance) {
        Some(chance) => format!(
            "top-1 re-identification rate (chance {:.2} %)",
            chance * 100.0
        ),
        None => "top-1 re-identification rate".to_string(),
    };
    match reid {
        Some(r) if r.verified => label.push_str(", recomputed by this audit"),
        Some(_) => label.push_str(", unverified (from run.json)"),
        None => {}
    }
    card(out, &rate, &label)?;
    let wall = audit
        .run
        .as_ref()
        .and_then(|r| Some(seconds(&r.record.finished)? - seconds(&r.record.started)?));
    card(
        out,
        &wall.map_or_else(|| "n/a".to_string(), duration),
        "run wall time, unverified (from run.json)",
    )?;
    let millis: Vec<u64> = rows.iter().filter_map(|r| r.milliseconds).collect();
    // Summed wide: the rows are the operator's, and a crafted one may hold u64::MAX.
    let total: u128 = millis.iter().map(|&m| u128::from(m)).sum();
    let per_image = if millis.is_empty() {
        "n/a".to_string()
    } else {
        format!("{:.0} ms", total as f64 / millis.len() as f64)
    };
    card(
        out,
        &per_image,
        "mean time per image, unverified (as the rows state)",
    )?;
    out.push_str("</div>\n");
    if let Some(run) = &audit.run {
        writeln!(
            out,
            "<p class=\"sub\">Run from {} to {} on {} (ONNX Runtime {}); per-image time: total {}, slowest {} (times are as run.json and the rows state them: unverified).</p>",
            escape(&run.record.started),
            escape(&run.record.finished),
            escape(&run.record.execution_provider),
            escape(&run.record.onnxruntime_version),
            duration(i64::try_from(total / 1000).unwrap_or(i64::MAX)),
            millis.iter().max().map_or_else(|| "n/a".to_string(), |m| format!("{m} ms")),
        )?;
    }
    Ok(())
}

fn status_colour(status: Status) -> &'static str {
    match status {
        Status::Certified => CERTIFIED,
        Status::Failed => FAILED,
        Status::Error => ERROR,
        Status::Skipped => SKIPPED,
    }
}

fn count_of(counts: &StatusCounts, status: Status) -> u64 {
    match status {
        Status::Certified => counts.certified,
        Status::Failed => counts.failed,
        Status::Error => counts.error,
        Status::Skipped => counts.skipped,
    }
}

fn write_levels(out: &mut String, rows: &[&ReportRow], counts: &StatusCounts) -> fmt::Result {
    let mut levels: BTreeMap<&str, StatusCounts> = BTreeMap::new();
    for row in rows {
        levels.entry(row.level.as_str()).or_default().add(row);
    }
    out.push_str("<section><h2>Rows per level and status</h2><p class=\"sub\">As the rows state them; each verdict is checked against its own distance and threshold, and the policy's rules when given.</p><table><tr><th>level</th>");
    for status in Status::ALL {
        write!(out, "<th class=\"n\">{status}</th>")?;
    }
    out.push_str("<th class=\"n\">total</th>");
    // A whole-image or lost-face certificate is weaker than a face one: counted apart.
    for kind in CertificateKind::ALL {
        write!(out, "<th class=\"n\">certified: {kind}</th>")?;
    }
    out.push_str("</tr>\n");
    let line = |out: &mut String, label: &str, c: &StatusCounts| -> fmt::Result {
        write!(out, "<tr><td>{label}</td>")?;
        for status in Status::ALL {
            write!(out, "<td class=\"n\">{}</td>", count_of(c, status))?;
        }
        write!(out, "<td class=\"n\">{}</td>", c.total())?;
        for kind in CertificateKind::ALL {
            write!(
                out,
                "<td class=\"n\">{}</td>",
                c.certified_by_kind.get(kind)
            )?;
        }
        writeln!(out, "</tr>")
    };
    for (level, c) in &levels {
        let label = if level.is_empty() {
            "<span class=\"muted\">(none)</span>".to_string()
        } else {
            escape(level)
        };
        line(out, &label, c)?;
    }
    line(out, "<b>all</b>", counts)?;
    out.push_str("</table></section>\n");
    Ok(())
}

fn write_histogram(out: &mut String, rows: &[&ReportRow]) -> fmt::Result {
    let points: Vec<(f32, Status)> = rows
        .iter()
        .filter_map(|r| r.distance.filter(|d| d.is_finite()).map(|d| (d, r.status)))
        .collect();
    if points.is_empty() {
        return write!(out, "<p class=\"muted\">No row has a distance.</p>");
    }
    // Threshold → the rows and levels that use it.
    let mut thresholds: BTreeMap<u32, (u64, BTreeSet<&str>)> = BTreeMap::new();
    for row in rows {
        if let Some(t) = row.threshold.filter(|t| t.is_finite()) {
            let slot = thresholds.entry(t.to_bits()).or_default();
            slot.0 += 1;
            slot.1.insert(row.level.as_str());
        }
    }
    let (lo, bin_width) = histogram_range(&points, &thresholds);
    let span = bin_width * HISTOGRAM_BINS as f32;
    let bin_of = |v: f32| {
        let bin = ((v - lo) / span * HISTOGRAM_BINS as f32).floor();
        (bin.max(0.0) as usize).min(HISTOGRAM_BINS - 1)
    };
    let mut certified = [0u64; HISTOGRAM_BINS];
    let mut others = [0u64; HISTOGRAM_BINS];
    for &(d, status) in &points {
        match status {
            Status::Certified => certified[bin_of(d)] += 1,
            _ => others[bin_of(d)] += 1,
        }
    }
    let top = (0..HISTOGRAM_BINS)
        .map(|i| certified[i] + others[i])
        .max()
        .unwrap_or(1)
        .max(1);

    let (width, height) = (1060.0f32, 300.0f32);
    let (left, right, top_margin, bottom) = (50.0f32, 20.0f32, 34.0f32, 40.0f32);
    let plot_w = width - left - right;
    let plot_h = height - top_margin - bottom;
    let x_of = |v: f32| left + (v - lo) / span * plot_w;
    let y_of = |count: u64| top_margin + plot_h - count as f32 / top as f32 * plot_h;
    write!(
        out,
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"histogram of distances\">"
    )?;
    let bar_w = plot_w / HISTOGRAM_BINS as f32;
    for i in 0..HISTOGRAM_BINS {
        let x = left + i as f32 * bar_w;
        let (c, o) = (certified[i], others[i]);
        if c > 0 {
            write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{CERTIFIED}\"/>",
                x + 1.0,
                y_of(c),
                bar_w - 2.0,
                top_margin + plot_h - y_of(c)
            )?;
        }
        if o > 0 {
            write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{FAILED}\"/>",
                x + 1.0,
                y_of(c + o),
                bar_w - 2.0,
                y_of(c) - y_of(c + o)
            )?;
        }
    }
    // Axes, ticks and labels.
    write!(
        out,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#1d1f23\"/><line x1=\"{left}\" y1=\"{top_margin}\" x2=\"{left}\" y2=\"{0}\" stroke=\"#1d1f23\"/>",
        top_margin + plot_h,
        left + plot_w
    )?;
    for k in 0..=5 {
        let v = lo + span * k as f32 / 5.0;
        let x = x_of(v);
        write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{0}\" x2=\"{x:.1}\" y2=\"{1}\" stroke=\"#1d1f23\"/><text x=\"{x:.1}\" y=\"{2}\" text-anchor=\"middle\">{v:.3}</text>",
            top_margin + plot_h,
            top_margin + plot_h + 5.0,
            top_margin + plot_h + 19.0
        )?;
    }
    for count in [0, top / 2, top] {
        write!(
            out,
            "<text x=\"{0}\" y=\"{1:.1}\" text-anchor=\"end\">{count}</text>",
            left - 6.0,
            y_of(count) + 4.0
        )?;
    }
    write!(
        out,
        "<text x=\"{0}\" y=\"{1}\" text-anchor=\"middle\">distance (larger = more different)</text>",
        left + plot_w / 2.0,
        height - 4.0
    )?;
    for (index, (bits, (_, levels))) in thresholds.iter().enumerate() {
        let t = f32::from_bits(*bits);
        let x = x_of(t);
        let levels: Vec<String> = levels.iter().map(|l| escape(l)).collect();
        write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{0}\" x2=\"{x:.1}\" y2=\"{1}\" stroke=\"#1d1f23\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"{2:.1}\" y=\"{3}\">threshold {t} ({4})</text>",
            top_margin - 4.0,
            top_margin + plot_h,
            x + 4.0,
            12.0 + 14.0 * (index % 2) as f32,
            levels.join(", ")
        )?;
    }
    out.push_str("</svg>");
    write!(
        out,
        "<p class=\"sub\"><span class=\"swatch\" style=\"background:{CERTIFIED}\"></span>certified <span class=\"swatch\" style=\"background:{FAILED}\"></span>not certified &middot; {} rows with a distance; the dashed line is the certification threshold: a certified output lies at or right of it.</p>",
        points.len()
    )
}

/// The histogram's left end and bin width: the data with a margin, and a bin edge exactly on the
/// threshold most rows use, so no bar straddles it.
fn histogram_range(
    points: &[(f32, Status)],
    thresholds: &BTreeMap<u32, (u64, BTreeSet<&str>)>,
) -> (f32, f32) {
    let values = points
        .iter()
        .map(|p| p.0)
        .chain(thresholds.keys().map(|&b| f32::from_bits(b)));
    let (min, max) = values.fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let margin = ((max - min) * 0.1).max(0.05);
    let mut lo = if min >= 0.0 {
        (min - margin).max(0.0)
    } else {
        min - margin
    };
    // One bin to spare: aligning on the threshold moves the left end by up to a bin.
    let width = (max + margin - lo) / (HISTOGRAM_BINS - 1) as f32;
    let main = thresholds
        .iter()
        .max_by_key(|(_, (rows, _))| *rows)
        .map(|(&b, _)| f32::from_bits(b));
    if let Some(t) = main {
        let up = t - ((t - lo) / width).floor() * width;
        lo = if up <= min {
            up
        } else {
            t - ((t - lo) / width).ceil() * width
        };
    }
    (lo, width)
}

fn write_attempts(out: &mut String, rows: &[&ReportRow]) -> fmt::Result {
    let mut attempts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for row in rows {
        if let Some(a) = row.attempts {
            let slot = attempts.entry(a).or_default();
            if row.status == Status::Certified {
                slot.0 += 1;
            } else {
                slot.1 += 1;
            }
        }
    }
    if attempts.is_empty() {
        return write!(out, "<p class=\"muted\">No row has an attempt count.</p>");
    }
    let top = attempts
        .values()
        .map(|(c, o)| c + o)
        .max()
        .unwrap_or(1)
        .max(1);
    let (bar_h, gap, left, width) = (22.0f32, 8.0f32, 110.0f32, 1060.0f32);
    let plot_w = width - left - 80.0;
    let height = attempts.len() as f32 * (bar_h + gap) + gap;
    write!(
        out,
        "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"attempts per image\">"
    )?;
    for (index, (a, (c, o))) in attempts.iter().enumerate() {
        let y = gap + index as f32 * (bar_h + gap);
        let wc = *c as f32 / top as f32 * plot_w;
        let wo = *o as f32 / top as f32 * plot_w;
        write!(
            out,
            "<text x=\"{0}\" y=\"{1:.1}\" text-anchor=\"end\">{a} attempt{2}</text><rect x=\"{left}\" y=\"{y:.1}\" width=\"{wc:.1}\" height=\"{bar_h}\" fill=\"{CERTIFIED}\"/><rect x=\"{3:.1}\" y=\"{y:.1}\" width=\"{wo:.1}\" height=\"{bar_h}\" fill=\"{FAILED}\"/><text x=\"{4:.1}\" y=\"{1:.1}\">{5}</text>",
            left - 8.0,
            y + 15.0,
            if *a == 1 { "" } else { "s" },
            left + wc,
            left + wc + wo + 6.0,
            c + o
        )?;
    }
    write!(
        out,
        "</svg><p class=\"sub\">Green: certified at that attempt; red: still not certified after it.</p>"
    )
}

fn write_findings(out: &mut String, audit: &Audit) -> fmt::Result {
    write!(out, "<section><h2>Findings ({})</h2>", audit.findings.len())?;
    if audit.findings.is_empty() {
        out.push_str("<p class=\"ok\">None.</p>");
    } else {
        out.push_str("<ul>");
        for finding in audit.findings.iter().take(LISTED_FINDINGS) {
            write_finding(out, finding)?;
        }
        out.push_str("</ul>");
        if audit.findings.len() > LISTED_FINDINGS {
            write!(
                out,
                "<p class=\"muted\">and {} more: run <code>boomerang audit</code> for all of them.</p>",
                audit.findings.len() - LISTED_FINDINGS
            )?;
        }
    }
    if !audit.not_checked.is_empty() {
        out.push_str("<h2 style=\"margin-top:14px\">Not checked</h2><ul>");
        for what in &audit.not_checked {
            write!(out, "<li class=\"muted\">{}</li>", escape(what))?;
        }
        out.push_str("</ul>");
    }
    if !audit.rescored.is_empty() || !audit.rerun.is_empty() {
        write!(
            out,
            "<p class=\"sub\">Re-scored {} rows and re-ran {} rows drawn from the chain head.</p>",
            audit.rescored.len(),
            audit.rerun.len()
        )?;
    }
    out.push_str("</section>\n");
    Ok(())
}

/// One finding, without its input path: input names identify people, and the page travels.
fn write_finding(out: &mut String, finding: &Finding) -> fmt::Result {
    let mut message = finding.message.clone();
    if let Some(input) = finding.input.as_deref().filter(|i| !i.is_empty()) {
        message = message.replace(input, "[input]");
    }
    write!(
        out,
        "<li><span class=\"kind\">{}</span>",
        escape(finding.kind.as_str())
    )?;
    if let Some(line) = finding.line {
        write!(out, "line {line} ")?;
    }
    if let Some(output) = &finding.output {
        write!(out, "<code>{}</code> ", escape(output))?;
    }
    write!(out, "&mdash; {}</li>", escape(&message))
}

fn write_hashes(out: &mut String, audit: &Audit, rows: &[&ReportRow]) -> fmt::Result {
    out.push_str("<section><h2>What was involved</h2><table><tr><th>item</th><th>in the report</th><th>given to the audit</th></tr>\n");
    let given: [(&str, Vec<&str>); 4] = [
        (
            "policy",
            audit.given.policy.iter().map(String::as_str).collect(),
        ),
        (
            "model",
            audit.given.model.iter().map(String::as_str).collect(),
        ),
        (
            "embedder",
            audit
                .given
                .embedder
                .iter()
                .chain(&audit.given.embedder_graph)
                .map(String::as_str)
                .collect(),
        ),
        (
            "detector",
            audit.given.detector.iter().map(String::as_str).collect(),
        ),
    ];
    let columns: [fn(&ReportRow) -> &str; 4] = [
        |r| &r.policy_sha256,
        |r| &r.model_sha256,
        |r| &r.embedder_sha256,
        |r| &r.detector_sha256,
    ];
    for ((what, given), column) in given.into_iter().zip(columns) {
        let values: BTreeSet<&str> = rows
            .iter()
            .map(|r| column(r))
            .filter(|v| !v.is_empty())
            .collect();
        let listed: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", escape(v)))
            .collect();
        let matching = given
            .iter()
            .find(|hash| values.len() == 1 && values.contains(*hash));
        let verdict = match (given.first(), matching) {
            (None, _) => "<span class=\"muted\">not given</span>".to_string(),
            (Some(_), Some(hash)) => {
                format!(
                    "<span class=\"ok\">matches</span> <code>{}</code>",
                    escape(hash)
                )
            }
            (Some(hash), None) => {
                format!(
                    "<span class=\"bad\">differs</span> <code>{}</code>",
                    escape(hash)
                )
            }
        };
        writeln!(
            out,
            "<tr><td>{what} sha256</td><td>{}</td><td>{verdict}</td></tr>",
            if listed.is_empty() {
                "<span class=\"muted\">none</span>".to_string()
            } else {
                listed.join("<br>")
            }
        )?;
    }
    let run_head = audit.run.as_ref().map(|r| &r.record.report_chain_head);
    let head_verdict = match run_head {
        None => "<span class=\"muted\">no run.json</span>".to_string(),
        Some(h) if *h == audit.chain_head => format!(
            "<span class=\"ok\">run.json agrees</span> <code>{}</code>",
            escape(h)
        ),
        Some(h) => format!(
            "<span class=\"bad\">run.json says</span> <code>{}</code>",
            escape(h)
        ),
    };
    writeln!(
        out,
        "<tr><td>report chain head</td><td><code>{}</code></td><td>{head_verdict}</td></tr>",
        escape(&audit.chain_head)
    )?;
    let versions: BTreeSet<&str> = rows
        .iter()
        .map(|r| r.tool_version.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    writeln!(
        out,
        "<tr><td>tool version</td><td>{}</td><td></td></tr>",
        escape(&versions.into_iter().collect::<Vec<_>>().join(", "))
    )?;
    if let Some(run) = &audit.run {
        writeln!(
            out,
            "<tr><td>ONNX Runtime</td><td>{} ({})</td><td></td></tr>",
            escape(&run.record.onnxruntime_version),
            escape(&run.record.execution_provider)
        )?;
    }
    out.push_str("</table></section>\n");
    Ok(())
}

/// Seconds since 1970 of an RFC 3339 UTC time as `report::rfc3339_utc` writes it.
fn seconds(time: &str) -> Option<i64> {
    let b = time.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| time.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
