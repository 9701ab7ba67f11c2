//! The step's console: with [`CONSOLE_FIFO`](crate::handover::CONSOLE_FIFO) handed over,
//! every record that leaves the queue for the collector is also written to that pipe, so
//! `run_rust_step` prints it where ZenML prints the step's Python records, formatted as ZenML
//! formats them. It is written off the logging thread: the coordinator hands each batch's
//! records (shared bytes, no copy) to a thread of its own, which frames and writes them.
//!
//! Framing: a stream of varint-length-delimited OTLP `ScopeLogs` messages, one per record
//! (the scope is its target; its context's attributes are left out: the console does not
//! show them), as protobuf's "delimited" streams are written — the helper already decodes
//! `ScopeLogs`.
//!
//! The console is best effort and never holds the logs back: a reader that falls behind fills
//! the pipe, then a small queue, and then the console skips batches (said once on stderr);
//! the records themselves are exported and counted as ever.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::record::EncodedRecord;
use crate::wire::{self, tag};

/// Batches waiting for the console thread; beyond that the console skips.
const WAITING_BATCHES: usize = 64;

/// The console's side of the coordinator.
#[derive(Debug)]
pub(crate) struct Console {
    batches: Sender<Vec<EncodedRecord>>,
    /// Closed by the console thread when it has written everything.
    done: Receiver<()>,
    skipped: bool,
}

impl Console {
    /// Starts the console thread, which opens `fifo` (a named pipe the helper reads). The open
    /// happens on that thread: a pipe nobody reads blocks it, never the pipeline.
    pub(crate) fn start(fifo: PathBuf) -> std::io::Result<Self> {
        let (batches, waiting) = bounded(WAITING_BATCHES);
        let (finished, done) = bounded::<()>(0);
        std::thread::Builder::new()
            .name("zenml-otel-console".into())
            .spawn(move || {
                write_all(&fifo, &waiting);
                drop(finished);
            })?;
        Ok(Self {
            batches,
            done,
            skipped: false,
        })
    }

    /// Hands `records` (leaving the queue now) to the console thread.
    pub(crate) fn show<'a>(&mut self, records: impl Iterator<Item = &'a EncodedRecord>) {
        match self.batches.try_send(records.cloned().collect()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) if !self.skipped => {
                self.skipped = true;
                eprintln!(
                    "zenml-otel: the step's console cannot keep up: some records are not shown \
                     there (they are exported as usual)"
                );
            }
            Err(TrySendError::Full(_)) => {}
        }
    }

    /// Lets the console thread write what it was given, until `deadline` at most.
    pub(crate) fn finish(self, deadline: Instant) {
        drop(self.batches);
        let _ = self.done.recv_deadline(deadline);
    }
}

/// The console thread: opens the pipe and writes each batch, until the coordinator is done.
fn write_all(fifo: &std::path::Path, batches: &Receiver<Vec<EncodedRecord>>) {
    let mut pipe = match open_fifo(fifo) {
        Ok(pipe) => pipe,
        Err(e) => {
            eprintln!(
                "zenml-otel: records are not shown on the step's console: {} ({}): {e}",
                fifo.display(),
                crate::handover::CONSOLE_FIFO
            );
            return;
        }
    };
    let mut frames = Vec::new();
    for batch in batches {
        frames.clear();
        batch.iter().for_each(|record| frame(record, &mut frames));
        // The helper went away: nothing more to show.
        if pipe.write_all(&frames).is_err() {
            return;
        }
    }
}

/// Opens the helper's named pipe for writing; anything else at that path is left alone.
fn open_fifo(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::FileTypeExt as _;
    let file = crate::private_file::open(std::fs::OpenOptions::new().write(true), path)?;
    if !file.metadata()?.file_type().is_fifo() {
        return Err(std::io::Error::other("not a named pipe"));
    }
    Ok(file)
}

/// Appends `record` as one length-delimited `ScopeLogs`.
pub(crate) fn frame(record: &EncodedRecord, out: &mut Vec<u8>) {
    let name = record.scope();
    let scope = wire::string_len(tag::SCOPE_NAME, name);
    let len = wire::delimited_len(tag::SCOPE_LOGS_SCOPE, scope)
        + wire::delimited_len(tag::SCOPE_LOGS_LOG_RECORDS, record.len());
    wire::encode_varint(len as u64, out);
    wire::encode_delimited_header(tag::SCOPE_LOGS_SCOPE, scope, out);
    wire::encode_string(tag::SCOPE_NAME, name, out);
    wire::encode_delimited_header(tag::SCOPE_LOGS_LOG_RECORDS, record.len(), out);
    out.extend_from_slice(record.head());
    out.extend_from_slice(record.tail());
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::logs::v1::ScopeLogs;
    use prost::Message as _;

    use super::frame;
    use crate::record::EncodedRecord;

    #[test]
    fn a_frame_is_a_delimited_scope_logs_holding_the_record() {
        let record = opentelemetry_proto::tonic::logs::v1::LogRecord {
            time_unix_nano: 7,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "loaded 3 rows".into(),
                    ),
                ),
            }),
            ..Default::default()
        };
        let bytes = record.encode_to_vec();
        let (head, tail) = bytes.split_at(4);
        let encoded = EncodedRecord::from_parts(head, tail, "app::load".into());
        let mut out = Vec::new();
        frame(&encoded, &mut out);
        frame(&encoded, &mut out);
        let mut rest = out.as_slice();
        for _ in 0..2 {
            let scope_logs = ScopeLogs::decode_length_delimited(&mut rest).unwrap();
            assert_eq!(scope_logs.scope.unwrap().name, "app::load");
            assert_eq!(scope_logs.log_records, vec![record.clone()]);
        }
        assert!(rest.is_empty());
    }
}
