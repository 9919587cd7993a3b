//! Logs as an operator's tooling reads them: `--log-format=text` (the default, one readable line
//! an event) or `--log-format=json` (one JSON object a line: `time`, `level`, `message`, and the
//! event's other fields), filtered by `--log-level` (`RUST_LOG`, when set, wins).

use std::fmt;
use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// One readable line an event.
    #[default]
    Text,
    /// One JSON object a line: time, level, message, fields.
    Json,
}

/// `--log-level`: the original's logrus numbers (0 panic … 4 info, 5 debug, 6 trace) or their
/// names; the filter it means.
///
/// # Errors
/// Neither a number from 0 to 6 nor a level name.
pub fn parse_level(s: &str) -> Result<&'static str, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "0" | "1" | "2" | "panic" | "fatal" | "error" => "error",
        "3" | "warn" | "warning" => "warn",
        "4" | "info" => "info",
        "5" | "debug" => "debug",
        "6" | "trace" => "trace",
        _ => {
            return Err(format!(
                "{s:?} is not a log level: give 0-6 (logrus: 4 info, 5 debug, 6 trace) or error, warn, info, debug, trace"
            ));
        }
    })
}

/// Installs the subscriber: `level` for etcdbr, the HTTP and gRPC stacks at warn.
pub fn init(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},h2=warn,tower=warn,hyper=warn,hyper_util=warn,kube_client=warn,rustls=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ProgressAware);
    match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
}

/// stderr, with the progress bar (if one is drawn) cleared while a line is written.
struct ProgressAware;

impl std::io::Write for ProgressAware {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().write(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One JSON object a line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(serde_json::Map::new());
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert(
            "level".into(),
            event
                .metadata()
                .level()
                .as_str()
                .to_ascii_lowercase()
                .into(),
        );
        let message = fields.0.remove("message").unwrap_or_default();
        line.insert("message".into(), message);
        line.extend(fields.0);
        writeln!(writer, "{}", serde_json::Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_logrus_numbers_or_names() {
        assert_eq!(parse_level("4"), Ok("info"));
        assert_eq!(parse_level("6"), Ok("trace"));
        assert_eq!(parse_level("DEBUG"), Ok("debug"));
        assert_eq!(parse_level("warning"), Ok("warn"));
        assert!(parse_level("7").unwrap_err().contains("not a log level"));
    }
}
