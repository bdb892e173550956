//! The benchmark report: scenarios with their samples, the figures (table rows) derived
//! from them with targets, and its three renderings — a text table for the terminal, one
//! JSON document (`bench.json`) and a Markdown table (`bench.md`).
//!
//! A scenario produces [`Series`] (one sample per round, or per event) and
//! [`Figure`]s that compare kinopio's series with a baseline (raw async-nats or Python)
//! and check a [`Target`]. New scenarios (leaf start, election) add their own figures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::clients::Client;
use super::error::BenchError;
use super::machine::Machine;
use super::stats::{Summary, ratio};

/// Version of the JSON layout.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// When the run finished (RFC 3339, UTC).
    pub generated_at: String,
    /// The command line.
    pub command: String,
    /// `release` or `debug` (numbers from a debug build mean little).
    pub build: &'static str,
    /// Where it ran.
    pub machine: Machine,
    /// Sizes and counts used.
    pub settings: serde_json::Value,
    /// Every scenario, with all samples.
    pub scenarios: Vec<ScenarioReport>,
    /// The table.
    pub figures: Vec<Figure>,
    /// Problems that make numbers doubtful (drops, incomplete runs, failed scenarios).
    pub flags: Vec<String>,
}

/// Whether a scenario ran.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub(crate) enum ScenarioStatus {
    /// It ran.
    Ok,
    /// It was not run, and why.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed, and how.
    Failed {
        /// The error.
        error: String,
    },
}

/// One scenario's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioReport {
    /// Short id (`throughput`, `latency`, ...).
    pub id: &'static str,
    /// What it measures.
    pub title: &'static str,
    /// Whether it ran.
    pub status: ScenarioStatus,
    /// Its parameters.
    pub params: serde_json::Value,
    /// Per-round figures per client.
    pub series: Vec<Series>,
    /// Everything measured in each run, as recorded.
    pub runs: Vec<serde_json::Value>,
    /// Problems seen (drops, incomplete runs).
    pub flags: Vec<String>,
    /// Wall time of the scenario in seconds.
    pub elapsed_s: f64,
}

impl ScenarioReport {
    /// An empty report for scenario `id`.
    pub(crate) fn new(id: &'static str, title: &'static str, params: serde_json::Value) -> ScenarioReport {
        ScenarioReport {
            id,
            title,
            status: ScenarioStatus::Ok,
            params,
            series: Vec::new(),
            runs: Vec::new(),
            flags: Vec::new(),
            elapsed_s: 0.0,
        }
    }

    /// A report for a scenario that did not run.
    pub(crate) fn not_run(id: &'static str, title: &'static str, status: ScenarioStatus) -> ScenarioReport {
        ScenarioReport { status, ..ScenarioReport::new(id, title, serde_json::Value::Null) }
    }

    /// Appends a sample to the series (`client`, `metric`), creating it if needed.
    pub(crate) fn push(&mut self, client: Client, metric: &str, unit: Unit, value: f64) {
        match self.series.iter_mut().find(|s| s.client == client && s.metric == metric) {
            Some(series) => series.samples.push(value),
            None => self.series.push(Series {
                client,
                metric: metric.to_owned(),
                unit,
                samples: vec![value],
                summary: None,
            }),
        }
    }

    /// The series (`client`, `metric`).
    pub(crate) fn series(&self, client: Client, metric: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.client == client && s.metric == metric)
    }

    /// Computes every series' summary.
    pub(crate) fn summarize(&mut self) {
        for series in &mut self.series {
            series.summary = Summary::of(&series.samples);
        }
    }
}

/// The samples of one metric of one client.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Series {
    /// Which client.
    pub client: Client,
    /// What is measured (`throughput_16B`, `p50`, ...).
    pub metric: String,
    /// In what.
    pub unit: Unit,
    /// One per round (or per event), in order; kinopio's and raw's rounds pair by index.
    pub samples: Vec<f64>,
    /// Their spread.
    pub summary: Option<Summary>,
}

/// Unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Unit {
    /// Messages per second.
    #[serde(rename = "msg/s")]
    MsgPerSec,
    /// Microseconds.
    #[serde(rename = "us")]
    Micros,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Millis,
    /// Megabytes (10^6 bytes).
    #[serde(rename = "MB")]
    Megabytes,
    /// A count.
    #[serde(rename = "count")]
    Count,
    /// Bytes.
    #[serde(rename = "B")]
    Bytes,
    /// Percent.
    #[serde(rename = "%")]
    Percent,
}

impl Unit {
    /// `value` with its unit, for people.
    pub(crate) fn format(self, value: f64) -> String {
        format!("{} {}", self.number(value), self.suffix(value)).trim_end().to_owned()
    }

    fn suffix(self, value: f64) -> &'static str {
        match self {
            Unit::MsgPerSec if value >= 1e6 => "M msg/s",
            Unit::MsgPerSec if value >= 1e3 => "k msg/s",
            Unit::MsgPerSec => "msg/s",
            Unit::Micros if value >= 1e3 => "ms",
            Unit::Micros => "µs",
            Unit::Millis if value >= 1e3 => "s",
            Unit::Millis => "ms",
            Unit::Megabytes => "MB",
            Unit::Count => "",
            Unit::Bytes => "B",
            Unit::Percent => "%",
        }
    }

    /// The number alone, scaled like [`Unit::format`] would scale `scale_by`.
    fn number_scaled(self, value: f64, scale_by: f64) -> String {
        let scaled = match self {
            Unit::MsgPerSec if scale_by >= 1e6 => value / 1e6,
            Unit::MsgPerSec if scale_by >= 1e3 => value / 1e3,
            Unit::Micros | Unit::Millis if scale_by >= 1e3 => value / 1e3,
            _ => value,
        };
        match self {
            Unit::Count | Unit::Bytes => format!("{scaled:.0}"),
            _ if scaled.abs() >= 100.0 => format!("{scaled:.0}"),
            _ if scaled.abs() >= 10.0 => format!("{scaled:.1}"),
            _ => format!("{scaled:.2}"),
        }
    }

    fn number(self, value: f64) -> String {
        self.number_scaled(value, value)
    }

    /// A summary: `median [min–max]` (just the value for one sample).
    pub(crate) fn format_summary(self, s: &Summary) -> String {
        if s.n <= 1 || s.min == s.max {
            return self.format(s.median);
        }
        format!(
            "{} [{}–{}]",
            self.format(s.median),
            self.number_scaled(s.min, s.median),
            self.number_scaled(s.max, s.median)
        )
    }
}

/// What a figure must reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Target {
    /// Median kinopio ÷ median baseline at least this.
    RatioAtLeast {
        /// The bound.
        value: f64,
    },
    /// Median kinopio ÷ median baseline at most this.
    RatioAtMost {
        /// The bound.
        value: f64,
    },
    /// kinopio's worst sample at most this (in the figure's unit).
    AtMost {
        /// The bound.
        value: f64,
    },
    /// kinopio's every sample exactly zero.
    Zero,
    /// No target: the figure is reported.
    Report,
}

impl Target {
    /// The target for people.
    pub(crate) fn describe(self, unit: Unit) -> String {
        match self {
            Target::RatioAtLeast { value } => format!("≥ {value:.2}"),
            Target::RatioAtMost { value } => format!("≤ {value:.2}"),
            Target::AtMost { value } => format!("≤ {}", unit.format(value)),
            Target::Zero => "0".to_owned(),
            Target::Report => "report".to_owned(),
        }
    }

    /// Whether it is met; `None` when there is no target or nothing to judge.
    pub(crate) fn check(self, kinopio: Option<&Summary>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Target::RatioAtLeast { value } => ratio.map(|r| r >= value),
            Target::RatioAtMost { value } => ratio.map(|r| r <= value),
            Target::AtMost { value } => kinopio.map(|s| s.max <= value),
            Target::Zero => kinopio.map(|s| s.max == 0.0 && s.min == 0.0),
            Target::Report => None,
        }
    }
}

/// The baseline side of a figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Baseline {
    /// Which client.
    pub client: Client,
    /// Its spread.
    pub summary: Summary,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    /// Stable id (`throughput_16B`, ...).
    pub id: String,
    /// The scenario it comes from.
    pub scenario: &'static str,
    /// What it is, for people.
    pub label: String,
    /// Unit of the values.
    pub unit: Unit,
    /// kinopio's spread.
    pub kinopio: Option<Summary>,
    /// The baseline's spread.
    pub baseline: Option<Baseline>,
    /// Median kinopio ÷ median baseline.
    pub ratio: Option<f64>,
    /// kinopio ÷ baseline per round (rounds paired by index), when both ran the same rounds.
    pub ratio_per_round: Option<Summary>,
    /// What it must reach.
    pub target: Target,
    /// Whether it does (`None`: no target or nothing measured).
    pub met: Option<bool>,
    /// Problems with this figure's runs (drops, incomplete runs).
    pub flags: Vec<String>,
    /// A remark.
    pub note: Option<String>,
}

impl Figure {
    /// kinopio's series compared with a baseline series.
    pub(crate) fn compare(
        id: &str,
        scenario: &'static str,
        label: &str,
        kinopio: Option<&Series>,
        baseline: Option<&Series>,
        target: Target,
    ) -> Figure {
        let k = kinopio.and_then(|s| Summary::of(&s.samples));
        let b = baseline.and_then(|s| Summary::of(&s.samples).map(|summary| Baseline { client: s.client, summary }));
        let r = match (&k, &b) {
            (Some(k), Some(b)) => ratio(k.median, b.summary.median),
            _ => None,
        };
        let per_round = match (kinopio, baseline) {
            (Some(k), Some(b))
                if k.samples.len() == b.samples.len() && !matches!(b.client, Client::Python | Client::Python3) =>
            {
                let ratios: Vec<f64> = k.samples.iter().zip(&b.samples).filter_map(|(k, b)| ratio(*k, *b)).collect();
                Summary::of(&ratios)
            }
            _ => None,
        };
        let unit = kinopio.or(baseline).map_or(Unit::Count, |s| s.unit);
        Figure {
            id: id.to_owned(),
            scenario,
            label: label.to_owned(),
            unit,
            met: target.check(k.as_ref(), r),
            kinopio: k,
            baseline: b,
            ratio: r,
            ratio_per_round: per_round,
            target,
            flags: Vec::new(),
            note: None,
        }
    }

    /// kinopio's series alone.
    pub(crate) fn single(
        id: &str,
        scenario: &'static str,
        label: &str,
        kinopio: Option<&Series>,
        target: Target,
    ) -> Figure {
        Figure::compare(id, scenario, label, kinopio, None, target)
    }

    /// Adds a note.
    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    /// Adds flags.
    pub(crate) fn with_flags(mut self, flags: &[String]) -> Figure {
        self.flags.extend(flags.iter().cloned());
        self
    }

    fn cells(&self) -> [String; 6] {
        let kinopio = self.kinopio.as_ref().map_or("—".to_owned(), |s| self.unit.format_summary(s));
        let baseline = self.baseline.as_ref().map_or("—".to_owned(), |b| self.unit.format_summary(&b.summary));
        let ratio = match (self.ratio, &self.ratio_per_round) {
            (Some(r), Some(p)) if p.n > 1 && p.min != p.max => format!("{r:.2} [{:.2}–{:.2}]", p.min, p.max),
            (Some(r), _) => format!("{r:.2}"),
            (None, _) => "—".to_owned(),
        };
        let met = match self.met {
            Some(true) if self.flags.is_empty() => "yes".to_owned(),
            Some(true) => "yes ⚠".to_owned(),
            Some(false) if self.flags.is_empty() => "NO".to_owned(),
            Some(false) => "NO ⚠".to_owned(),
            None if self.flags.is_empty() => "—".to_owned(),
            None => "⚠".to_owned(),
        };
        [self.label.clone(), kinopio, baseline, ratio, self.target.describe(self.unit), met]
    }

    fn notes(&self) -> String {
        let mut parts: Vec<String> = self.flags.iter().map(|f| format!("⚠ {f}")).collect();
        if let Some(note) = &self.note {
            parts.push(note.clone());
        }
        parts.join("; ")
    }
}

const HEADERS: [&str; 6] = ["figure", "kinopio", "baseline", "kinopio ÷ baseline", "target", "met?"];

impl Report {
    /// The table for the terminal.
    pub(crate) fn text_table(&self) -> String {
        let rows: Vec<[String; 6]> = self.figures.iter().map(Figure::cells).collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::new();
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', w.saturating_sub(cell.chars().count())));
            }
            out.trim_end().to_owned()
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}", line(&HEADERS.map(str::to_owned)));
        let _ = writeln!(out, "{}", line(&widths.map(|w| "-".repeat(w))));
        for (row, figure) in rows.iter().zip(&self.figures) {
            let _ = writeln!(out, "{}", line(row));
            let notes = figure.notes();
            if !notes.is_empty() {
                let _ = writeln!(out, "    {notes}");
            }
        }
        for scenario in &self.scenarios {
            match &scenario.status {
                ScenarioStatus::Ok => {}
                ScenarioStatus::Skipped { reason } => {
                    let _ = writeln!(out, "skipped {}: {reason}", scenario.id);
                }
                ScenarioStatus::Failed { error } => {
                    let _ = writeln!(out, "FAILED {}: {error}", scenario.id);
                }
            }
        }
        if !self.flags.is_empty() {
            let _ = writeln!(out, "\nflags:");
            for flag in &self.flags {
                let _ = writeln!(out, "  ⚠ {flag}");
            }
        }
        out
    }

    /// The Markdown page (`bench.md`).
    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# kinopio benchmark\n");
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Generated {} by `{}` ({} build) on {} ({} cores, Linux {}), nats-server {}, commit {}{}.\n",
            self.generated_at,
            self.command,
            self.build,
            m.cpu_model.as_deref().unwrap_or("unknown CPU"),
            m.cores,
            m.kernel.as_deref().unwrap_or("?"),
            m.nats_server.version.as_deref().unwrap_or("?"),
            m.git_commit.as_deref().map_or("unknown", |c| &c[..c.len().min(12)]),
            if m.git_dirty == Some(true) { " (with local changes)" } else { "" },
        );
        let _ = writeln!(
            out,
            "kinopio and raw async-nats run alternately (A B, B A, ...) on the same server in the same run; \
             each cell is the median over rounds with [min–max]. The ratio is median ÷ median, with the \
             range of per-round ratios in brackets. Ratio targets are judged on medians; absolute \
             targets (≤, 0) on the worst round.\n"
        );
        let esc = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(out, "| {} | notes |", HEADERS.join(" | "));
        let _ = writeln!(out, "|{}---|", "---|".repeat(HEADERS.len()));
        for figure in &self.figures {
            let cells = figure.cells().map(|c| esc(&c));
            let _ = writeln!(out, "| {} | {} |", cells.join(" | "), esc(&figure.notes()));
        }
        let _ = writeln!(out);
        for scenario in &self.scenarios {
            match &scenario.status {
                ScenarioStatus::Ok => {}
                ScenarioStatus::Skipped { reason } => {
                    let _ = writeln!(out, "- scenario `{}` skipped: {reason}", scenario.id);
                }
                ScenarioStatus::Failed { error } => {
                    let _ = writeln!(out, "- scenario `{}` FAILED: {error}", scenario.id);
                }
            }
        }
        if !self.flags.is_empty() {
            let _ = writeln!(out, "\n## Flags\n");
            for flag in &self.flags {
                let _ = writeln!(out, "- ⚠ {flag}");
            }
        }
        let _ = writeln!(out, "\n## Scenarios\n");
        for scenario in &self.scenarios {
            let _ = writeln!(out, "- `{}`: {} ({:.1} s)", scenario.id, scenario.title, scenario.elapsed_s);
        }
        let _ = writeln!(out, "\nAll samples, per-run details and settings are in `bench.json`.");
        out
    }

    /// Writes `bench.json` and `bench.md` into `dir` (created if needed) and returns their
    /// paths.
    pub(crate) fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
        std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
            what: "create",
            path: dir.to_owned(),
            source,
        })?;
        let json_path = dir.join("bench.json");
        let json = serde_json::to_string_pretty(self).map_err(|e| BenchError::Io {
            what: "serialise the report for",
            path: json_path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&json_path, &(json + "\n"))?;
        let md_path = dir.join("bench.md");
        write_atomically(&md_path, &self.markdown())?;
        Ok(vec![json_path, md_path])
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), BenchError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|source| BenchError::Io { what: "write", path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| BenchError::Io { what: "replace", path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(client: Client, samples: &[f64]) -> Series {
        Series { client, metric: "m".into(), unit: Unit::MsgPerSec, samples: samples.to_vec(), summary: None }
    }

    #[test]
    fn compare_computes_ratio_of_medians_and_paired_rounds() {
        let k = series(Client::Kinopio, &[90.0, 100.0, 80.0]);
        let r = series(Client::Raw, &[100.0, 100.0, 100.0]);
        let f = Figure::compare("x", "s", "x", Some(&k), Some(&r), Target::RatioAtLeast { value: 0.9 });
        assert_eq!(f.ratio, Some(0.9));
        assert_eq!(f.met, Some(true));
        let per = f.ratio_per_round.unwrap();
        assert_eq!((per.min, per.max), (0.8, 1.0));
        let f = Figure::compare("x", "s", "x", Some(&k), Some(&r), Target::RatioAtLeast { value: 0.95 });
        assert_eq!(f.met, Some(false));
    }

    #[test]
    fn absolute_targets_use_the_worst_sample() {
        let k = series(Client::Kinopio, &[0.0, 1.0, 0.0]);
        assert_eq!(Figure::single("x", "s", "x", Some(&k), Target::Zero).met, Some(false));
        assert_eq!(Figure::single("x", "s", "x", Some(&k), Target::AtMost { value: 1.0 }).met, Some(true));
        assert_eq!(Figure::single("x", "s", "x", None, Target::Zero).met, None);
    }

    #[test]
    fn units_scale_for_people() {
        assert_eq!(Unit::MsgPerSec.format(812_345.0), "812 k msg/s");
        assert_eq!(Unit::MsgPerSec.format(1_234_567.0), "1.23 M msg/s");
        assert_eq!(Unit::Micros.format(52.14), "52.1 µs");
        assert_eq!(Unit::Micros.format(1520.0), "1.52 ms");
        assert_eq!(Unit::Count.format(3.0), "3");
    }
}
