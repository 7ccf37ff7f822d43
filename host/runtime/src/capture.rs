//! The op's log: one ordered, bounded list of lines fed by `host.log` and by the guest's
//! stdout and stderr, which are never printed raw to the host terminal.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use sluice_model::{LogLevel, LogLine, LogSource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The shared, bounded log of one op call.
#[derive(Clone)]
pub(crate) struct LogSink(Arc<Mutex<LogBuf>>);

struct LogBuf {
    lines: Vec<LogLine>,
    stdout_partial: Vec<u8>,
    stderr_partial: Vec<u8>,
    bytes: usize,
    max_bytes: usize,
    dropped: usize,
}

impl LogSink {
    pub(crate) fn new(max_bytes: usize) -> Self {
        LogSink(Arc::new(Mutex::new(LogBuf {
            lines: Vec::new(),
            stdout_partial: Vec::new(),
            stderr_partial: Vec::new(),
            bytes: 0,
            max_bytes,
            dropped: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogBuf> {
        // A poisoned lock only means a panic elsewhere mid-push; the lines are still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a line from `source`, or counts it as dropped once the byte budget is spent.
    pub(crate) fn push(&self, level: LogLevel, source: LogSource, message: String) {
        self.lock().push(level, source, message);
    }

    /// Takes every line, flushing unterminated stdout/stderr text and noting dropped bytes.
    pub(crate) fn finish(&self) -> Vec<LogLine> {
        let mut buf = self.lock();
        for source in [LogSource::Stdout, LogSource::Stderr] {
            let partial = std::mem::take(buf.partial(source));
            if !partial.is_empty() {
                let level = level_of(source);
                buf.push(
                    level,
                    source,
                    String::from_utf8_lossy(&partial).into_owned(),
                );
            }
        }
        let mut lines = std::mem::take(&mut buf.lines);
        if buf.dropped > 0 {
            lines.push(LogLine {
                level: LogLevel::Warn,
                source: LogSource::Host,
                message: format!(
                    "log cut: {} more bytes dropped past the limit of {} bytes",
                    buf.dropped, buf.max_bytes
                ),
            });
        }
        lines
    }

    fn write(&self, source: LogSource, bytes: &[u8]) {
        let mut buf = self.lock();
        buf.partial(source).extend_from_slice(bytes);
        while let Some(pos) = buf.partial(source).iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.partial(source).drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
            buf.push(level_of(source), source, text);
        }
        // A line that never ends still counts against the budget.
        let max = buf.max_bytes;
        if buf.partial(source).len() > max {
            let n = buf.partial(source).len();
            buf.partial(source).clear();
            buf.dropped += n;
        }
    }

    /// A WASI output stream writing into this log as `source`.
    pub(crate) fn stream(&self, source: LogSource) -> GuestOutput {
        GuestOutput {
            sink: self.clone(),
            source,
        }
    }
}

impl LogBuf {
    fn partial(&mut self, source: LogSource) -> &mut Vec<u8> {
        match source {
            LogSource::Stderr => &mut self.stderr_partial,
            _ => &mut self.stdout_partial,
        }
    }

    fn push(&mut self, level: LogLevel, source: LogSource, message: String) {
        let n = message.len();
        if self.bytes + n > self.max_bytes {
            self.dropped += n;
            return;
        }
        self.bytes += n;
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }
}

fn level_of(source: LogSource) -> LogLevel {
    match source {
        LogSource::Stderr => LogLevel::Warn,
        _ => LogLevel::Info,
    }
}

/// The guest's stdout or stderr. Writes always succeed: past the budget they are dropped and
/// counted, so a flooding op is cut short in its log rather than crashed.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    sink: LogSink,
    source: LogSource,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.sink.write(self.source, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_order_across_sources() {
        let sink = LogSink::new(1024);
        sink.write(LogSource::Stdout, b"one\ntw");
        sink.push(LogLevel::Info, LogSource::Op, "from op".into());
        sink.write(LogSource::Stdout, b"o\r\n");
        sink.write(LogSource::Stderr, b"tail without newline");
        let lines: Vec<_> = sink.finish().into_iter().map(|l| l.message).collect();
        assert_eq!(lines, ["one", "from op", "two", "tail without newline"]);
    }

    #[test]
    fn drops_past_the_budget_and_says_so() {
        let sink = LogSink::new(10);
        sink.write(LogSource::Stdout, b"12345\n67890\nabcdef\n");
        let lines = sink.finish();
        assert_eq!(lines[0].message, "12345");
        assert_eq!(lines[1].message, "67890");
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].source, LogSource::Host);
        assert!(
            lines[2].message.contains("6 more bytes dropped"),
            "{}",
            lines[2].message
        );
    }
}
