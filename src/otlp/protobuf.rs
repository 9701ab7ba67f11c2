//! OTLP/protobuf framing of a batch: one `ExportLogsServiceRequest` holding a `ResourceLogs`
//! per run, a `ScopeLogs` per target within it, around records the logging threads already
//! encoded (`record.rs`).
//!
//! opentelemetry-otlp encodes through opentelemetry-proto's structs: per record it builds and
//! hashes an owned `InstrumentationScope`, copies every key and string into a `KeyValue` tree,
//! then prost walks that tree twice (lengths, bytes) and it is freed — about 1.6 µs a record
//! here — and it takes one resource per call, so a batch that spans many runs costs a request
//! per run. Here a request is headers and concatenation: every record's length is known, a
//! run's resource is encoded once for its lifetime. The tests hold the bytes equal to
//! opentelemetry-proto's own conversion of the same records, the reference. OTLP/JSON is that
//! request again (`json.rs`).

use std::sync::Arc;

use crate::batch::QueuedRecord;
use crate::wire::{delimited_len, encode_delimited_header, encode_string, string_len, tag};

/// Reusable scratch space of one sender.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    /// Encoded length of each record of the run being written, by position.
    lengths: Vec<usize>,
    /// Where each scope's records start within that run.
    scopes: Vec<usize>,
}

impl Encoder {
    /// Encodes `records` as one request. Records must come grouped by run (any order of runs);
    /// each run's records are regrouped by scope in place, each scope's keeping their order.
    pub(crate) fn encode(&mut self, records: &mut [QueuedRecord], out: &mut Vec<u8>) {
        let mut rest = records;
        while !rest.is_empty() {
            let n = same_run(rest);
            let (run, tail) = std::mem::take(&mut rest).split_at_mut(n);
            self.encode_run(run, out);
            rest = tail;
        }
    }

    /// One `ResourceLogs`: every length is known before its bytes are written, so each record
    /// is measured once and written once, straight into `out`.
    fn encode_run(&mut self, records: &mut [QueuedRecord], out: &mut Vec<u8>) {
        group_by_scope(records);
        self.lengths.clear();
        self.lengths.extend(records.iter().map(queued_len));
        self.scopes.clear();
        self.scopes.extend(
            (0..records.len())
                .filter(|&i| i == 0 || records[i].record.scope() != records[i - 1].record.scope()),
        );
        let scope_lens: Vec<usize> = (0..self.scopes.len())
            .map(|s| {
                let (from, to) = self.scope_bounds(s);
                scope_logs_len(records[from].record.scope(), &self.lengths[from..to])
            })
            .collect();
        let resource = records[0].run().encoded();
        let resource_logs_len = resource.resource.len()
            + resource.schema_url.len()
            + scope_lens
                .iter()
                .map(|&len| delimited_len(tag::RESOURCE_LOGS_SCOPE_LOGS, len))
                .sum::<usize>();
        encode_delimited_header(tag::REQUEST_RESOURCE_LOGS, resource_logs_len, out);
        out.extend_from_slice(&resource.resource);
        for (s, &len) in scope_lens.iter().enumerate() {
            let (from, to) = self.scope_bounds(s);
            encode_delimited_header(tag::RESOURCE_LOGS_SCOPE_LOGS, len, out);
            let name = records[from].record.scope();
            encode_delimited_header(tag::SCOPE_LOGS_SCOPE, scope_len(name), out);
            encode_string(tag::SCOPE_NAME, name, out);
            for (queued, &len) in records[from..to].iter().zip(&self.lengths[from..to]) {
                encode_delimited_header(tag::SCOPE_LOGS_LOG_RECORDS, len, out);
                encode_record(queued, out);
            }
        }
        out.extend_from_slice(&resource.schema_url);
    }

    fn scope_bounds(&self, s: usize) -> (usize, usize) {
        let end = self.scopes.get(s + 1).copied();
        (self.scopes[s], end.unwrap_or(self.lengths.len()))
    }
}

/// Bytes `queued` takes in a request, its `log_records` field header included.
pub(crate) fn record_size(queued: &QueuedRecord) -> usize {
    delimited_len(tag::SCOPE_LOGS_LOG_RECORDS, queued_len(queued))
}

/// An upper bound of the bytes a request spends, besides its records, on a run and scope that
/// `queued` opens: the `ResourceLogs` and `ScopeLogs` headers, the resource, the scope.
pub(crate) fn group_overhead(queued: &QueuedRecord) -> usize {
    /// A field key and the longest length varint.
    const HEADER: usize = 1 + 10;
    let resource = queued.run().encoded();
    let scope = delimited_len(tag::SCOPE_LOGS_SCOPE, scope_len(queued.record.scope()));
    HEADER + resource.resource.len() + resource.schema_url.len() + HEADER + scope
}

/// Orders one run's records by scope, scopes in order of first appearance, each scope's records
/// in their order. Nearly always a single target, so nothing moves.
fn group_by_scope(records: &mut [QueuedRecord]) {
    let first = records[0].record.scope();
    if records.iter().all(|queued| queued.record.scope() == first) {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for queued in records.iter() {
        let name = queued.record.scope();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    // Stable: equal keys keep their order.
    records.sort_by_cached_key(|queued| {
        let name = queued.record.scope();
        names.iter().position(|n| n == name)
    });
}

fn scope_len(name: &str) -> usize {
    string_len(tag::SCOPE_NAME, name)
}

fn scope_logs_len(name: &str, record_lens: &[usize]) -> usize {
    delimited_len(tag::SCOPE_LOGS_SCOPE, scope_len(name))
        + record_lens
            .iter()
            .map(|&len| delimited_len(tag::SCOPE_LOGS_LOG_RECORDS, len))
            .sum::<usize>()
}

/// Length of a queued record's `LogRecord`: the record and its context's attributes.
fn queued_len(queued: &QueuedRecord) -> usize {
    queued.record.len() + queued.context.encoded_attributes().len()
}

/// The record's own fields, its context's attributes after its own attributes, the rest.
fn encode_record(queued: &QueuedRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(queued.record.head());
    out.extend_from_slice(queued.context.encoded_attributes());
    out.extend_from_slice(queued.record.tail());
}

/// How many records at the start of `records` belong to the first one's run.
fn same_run(records: &[QueuedRecord]) -> usize {
    records.first().map_or(0, |first| {
        records
            .iter()
            .take_while(|queued| Arc::ptr_eq(queued.run(), first.run()))
            .count()
    })
}

#[cfg(test)]
mod tests;
