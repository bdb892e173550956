//! Scenario `python`: the same throughput and latency scenarios run by the Python reference
//! kinopio-hub 0.1.1 (`scripts/bench/python_bench.py`, which prints one JSON document),
//! against the same server. The figures give kinopio's median over Python's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::Ctx;
use super::clients::Client;
use super::error::BenchError;
use super::report::{Figure, ScenarioReport, ScenarioStatus, Target, Unit};
use super::{latency, throughput};

/// Scenario id.
pub(crate) const ID: &str = "python";
/// What it measures.
pub(crate) const TITLE: &str = "the throughput and latency scenarios run by Python kinopio-hub 0.1.1";
/// The interpreter: `--python`, else `KINOPIO_PYTHON`, else the repository's `.venv`
/// ([`kinopio_test_support::python::python_path`]).
pub(crate) fn python_path(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(kinopio_test_support::python::python_path, Path::to_owned)
}

/// The script: `--python-script`, else the repository's `scripts/bench/python_bench.py`.
pub(crate) fn script_path(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(|| kinopio_test_support::repo_root().join("scripts/bench/python_bench.py"), Path::to_owned)
}

/// Runs the scenario, or reports it skipped when no interpreter or script is there.
pub(crate) async fn run(ctx: &Ctx<'_>, python: &Path, script: &Path) -> Result<ScenarioReport, BenchError> {
    let s = &ctx.settings;
    for (what, path) in [("interpreter", python), ("script", script)] {
        if !path.exists() {
            return Ok(ScenarioReport::not_run(
                ID,
                TITLE,
                ScenarioStatus::Skipped {
                    reason: format!(
                        "no Python {what} at {}; run scripts/install-deps.sh or pass --python/--python-script",
                        path.display()
                    ),
                },
            ));
        }
    }
    let mut report = ScenarioReport::new(
        ID,
        TITLE,
        json!({
            "rounds": s.rounds, "messages": s.python_messages, "warmup_messages": s.python_warmup_messages,
            "requests": s.python_requests, "warmup_requests": s.python_warmup_requests,
            "interpreter": python, "script": script,
        }),
    );
    let mut command = tokio::process::Command::new(python);
    command
        .arg(script)
        .args(["--server", ctx.url()])
        .args(["--rounds", &s.rounds.to_string()])
        .args(["--messages", &s.python_messages.to_string()])
        .args(["--warmup-messages", &s.python_warmup_messages.to_string()])
        .args(["--requests", &s.python_requests.to_string()])
        .args(["--warmup-requests", &s.python_warmup_requests.to_string()])
        .args(["--timeout", &s.wait_timeout.as_secs().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    ctx.progress(&format!("{ID}: running {} {}", python.display(), script.display()));
    let limit = s.wait_timeout * 3 * s.rounds.max(1) + Duration::from_secs(30);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| BenchError::Python(format!("it did not finish within {limit:?}")))?
        .map_err(|source| BenchError::Io { what: "run", path: python.to_owned(), source })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(BenchError::Python(format!("exit {}: {}", output.status, tail(&stderr, 20))));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_default();
    let doc: Value = serde_json::from_str(line)
        .map_err(|e| BenchError::Python(format!("no JSON result ({e}); stderr: {}", tail(&stderr, 20))))?;
    record(&mut report, &doc)?;
    for series in &report.series {
        ctx.progress(&format!("{ID}: {} {:?}", series.metric, series.samples));
    }
    Ok(report)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Turns the script's document into series.
fn record(report: &mut ScenarioReport, doc: &Value) -> Result<(), BenchError> {
    let missing = |what: &str| BenchError::Python(format!("its result has no {what}"));
    for run in doc.get("throughput").and_then(Value::as_array).ok_or_else(|| missing("throughput"))? {
        let size = run.get("payload_bytes").and_then(Value::as_u64).ok_or_else(|| missing("payload_bytes"))?;
        let rate = run.get("msgs_per_s").and_then(Value::as_f64).ok_or_else(|| missing("msgs_per_s"))?;
        let (expected, received) =
            (run.get("messages").and_then(Value::as_u64), run.get("received").and_then(Value::as_u64));
        if let (Some(e), Some(r)) = (expected, received)
            && r < e
        {
            report.flags.push(format!("Python {size} B: {} of {e} messages missing", e - r));
        }
        let Some((_, metric, _)) = throughput::SIZES.iter().find(|(s, _, _)| *s as u64 == size) else {
            continue;
        };
        report.push(Client::Python, metric, Unit::MsgPerSec, rate);
        report.runs.push(run.clone());
    }
    for run in doc.get("latency").and_then(Value::as_array).ok_or_else(|| missing("latency"))? {
        let p50 = run.get("p50_us").and_then(Value::as_f64).ok_or_else(|| missing("p50_us"))?;
        let p99 = run.get("p99_us").and_then(Value::as_f64).ok_or_else(|| missing("p99_us"))?;
        if let Some(retries) = run.get("setup_retries").and_then(Value::as_u64).filter(|r| *r > 0) {
            report.flags.push(format!(
                "Python latency: the new service answered only after {retries} \"no responders\" retries"
            ));
        }
        report.push(Client::Python, "p50", Unit::Micros, p50);
        report.push(Client::Python, "p99", Unit::Micros, p99);
        report.runs.push(run.clone());
    }
    if let Some(obj) = report.params.as_object_mut() {
        for key in ["kinopio_hub_version", "nats_py_version", "python"] {
            if let Some(v) = doc.get(key) {
                obj.insert(key.to_owned(), v.clone());
            }
        }
    }
    Ok(())
}

/// The table rows: kinopio's medians (from the `throughput` and `latency` scenarios of the
/// same run) over Python's.
pub(crate) fn figures(all: &[ScenarioReport]) -> Vec<Figure> {
    let Some(py) = all.iter().find(|r| r.id == ID) else { return Vec::new() };
    let find = |id: &str| all.iter().find(|r| r.id == id);
    let mut figures = Vec::new();
    for (_, metric, label) in throughput::SIZES {
        let k = find(throughput::ID).and_then(|r| r.series(Client::Kinopio, metric));
        let f = Figure::compare(
            &format!("python_{metric}"),
            ID,
            &format!("publish → subscribe {label}, ÷ Python"),
            k,
            py.series(Client::Python, metric),
            Target::Report,
        );
        let note = f.ratio.map(|r| format!("kinopio delivers {r:.1}× Python's rate"));
        figures.push(match note {
            Some(n) => f.with_note(n),
            None => f,
        });
    }
    for (metric, label) in [("p50", "request → serve p50, ÷ Python"), ("p99", "request → serve p99, ÷ Python")] {
        let k = find(latency::ID).and_then(|r| r.series(Client::Kinopio, metric));
        let f = Figure::compare(
            &format!("python_request_{metric}"),
            ID,
            label,
            k,
            py.series(Client::Python, metric),
            Target::Report,
        );
        let note = f.ratio.filter(|r| *r > 0.0).map(|r| format!("Python takes {:.1}× kinopio's time", 1.0 / r));
        figures.push(match note {
            Some(n) => f.with_note(n),
            None => f,
        });
    }
    if let Some(first) = figures.first_mut() {
        first.flags.extend(py.flags.iter().cloned());
    }
    figures
}
