//! The crash-safe spool (opt-in: `spool_dir`): every record is written to a memory-mapped
//! segment file before the `tracing` call that logged it returns, so a process killed at any
//! later instant leaves it on disk; a segment is deleted once it is full (sealed) and the
//! collector acknowledged each of its records. The next layer started on the same directory
//! finds what a dead process left (the directory's `lock` tells a live owner from a dead one)
//! and sends it first, under its original resources and timestamps.
//!
//! Files (`format.rs`): `lock`, and segments `{number:016x}.spool` in the order they were
//! written. A segment holds the contexts (resource and extra attributes) of its records, so
//! each reads on its own; mapping (`map.rs`) is the one module `deny(unsafe_code)` lets through.

mod format;
mod map;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use self::format::{Entry, ENTRY_HEADER_LEN, HEADER_LEN};
use self::map::MappedFile;
use crate::record::EncodedRecord;
use crate::span_context::{EncodedResource, Resolved, Run};
use crate::Error;

/// Bytes of a segment (more for a record that needs more).
const SEGMENT_BYTES: usize = 4 * 1024 * 1024;
const EXTENSION: &str = "spool";

/// A live spool: this process holds its directory's lock for as long as it exists.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    /// Held (flock) until the spool closes: no other process (or layer) writes or replays
    /// this directory meanwhile.
    lock: Mutex<Option<File>>,
    max_bytes: u64,
    /// Bytes of the segment files that exist.
    on_disk: Arc<AtomicU64>,
    writer: Mutex<Writer>,
}

#[derive(Debug)]
struct Writer {
    active: Option<Active>,
    /// Set by `close`: the directory is no longer ours.
    closed: bool,
    next_number: u64,
    scratch: Vec<u8>,
}

/// The segment records are written to now.
#[derive(Debug)]
struct Active {
    file: MappedFile,
    at: usize,
    segment: Arc<Segment>,
    /// The contexts written into this segment.
    contexts: HashSet<u64>,
}

/// One segment file: removed once sealed and every record in it was acknowledged.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    bytes: u64,
    on_disk: Arc<AtomicU64>,
    written: AtomicU64,
    acknowledged: AtomicU64,
    sealed: AtomicBool,
    removed: AtomicBool,
}

impl Segment {
    fn new(path: PathBuf, bytes: u64, on_disk: &Arc<AtomicU64>) -> Self {
        on_disk.fetch_add(bytes, Ordering::SeqCst);
        Self {
            path,
            bytes,
            on_disk: Arc::clone(on_disk),
            written: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        }
    }

    /// A collector acknowledged one of this segment's records.
    pub(crate) fn acknowledge(&self) {
        self.acknowledged.fetch_add(1, Ordering::SeqCst);
        self.remove_when_done();
    }

    /// No more records go in.
    fn seal(&self) {
        self.sealed.store(true, Ordering::SeqCst);
        self.remove_when_done();
    }

    fn remove_when_done(&self) {
        let done = self.sealed.load(Ordering::SeqCst)
            && self.acknowledged.load(Ordering::SeqCst) >= self.written.load(Ordering::SeqCst);
        if done && !self.removed.swap(true, Ordering::SeqCst) {
            // A file that cannot be removed is replayed by the next start: at least once.
            let _ = std::fs::remove_file(&self.path);
            self.on_disk.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }
}

/// Why a record could not be spooled: it is then counted as dropped, as on a full queue.
#[derive(Debug)]
pub(crate) enum Refused {
    /// `max_spool_bytes` would be exceeded.
    Full,
    /// The disk refused a new segment (full, unwritable).
    Io(std::io::Error),
    /// The pipeline shut down.
    Closed,
}

/// A record read back, with its context and the segment to acknowledge it in.
pub(crate) type RecoveredRecord = (Arc<Resolved>, EncodedRecord, Arc<Segment>);

/// What a dead process left: its records, to be sent before any new one.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) records: Vec<RecoveredRecord>,
    /// Segments that ended in a torn or corrupt entry, or could not be read at all.
    pub(crate) torn: u64,
}

impl Spool {
    /// Takes `dir` (created if missing) for this process and reads what a dead owner left.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovered), Error> {
        let refused = |what: &str, e: std::io::Error| {
            Error::config("spool_dir", format!("`{}`: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| refused("cannot create it", e))?;
        let lock = File::create(dir.join("lock")).map_err(|e| refused("cannot write in it", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::config(
                    "spool_dir",
                    format!(
                        "`{}` is in use by another live process (or layer): give each its own",
                        dir.display()
                    ),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(refused("cannot lock it", e)),
        }
        let on_disk = Arc::new(AtomicU64::new(0));
        let (recovered, next_number) =
            recover(dir, &on_disk).map_err(|e| refused("cannot read it", e))?;
        let spool = Self {
            dir: dir.to_owned(),
            lock: Mutex::new(Some(lock)),
            max_bytes,
            on_disk,
            writer: Mutex::new(Writer {
                active: None,
                closed: false,
                next_number,
                scratch: Vec::new(),
            }),
        };
        Ok((spool, recovered))
    }

    /// Writes `record` (and its context, once per segment) to the spool; returns the segment
    /// to acknowledge it in.
    pub(crate) fn append(
        &self,
        context: &Resolved,
        record: &EncodedRecord,
    ) -> Result<Arc<Segment>, Refused> {
        let mut writer = crate::sync::lock(&self.writer);
        let writer = &mut *writer;
        if writer.closed {
            return Err(Refused::Closed);
        }
        let mut written_context = encode(writer, context, record);
        if !writer
            .active
            .as_ref()
            .is_some_and(|a| a.fits(writer.scratch.len()))
        {
            self.roll(writer)?;
            written_context = encode(writer, context, record);
        }
        let Some(active) = writer.active.as_mut() else {
            return Err(Refused::Full); // roll() always leaves one
        };
        let end = active.at + writer.scratch.len();
        active.file.bytes_mut()[active.at..end].copy_from_slice(&writer.scratch);
        active.at = end;
        if written_context {
            active.contexts.insert(context.id);
        }
        active.segment.written.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::clone(&active.segment))
    }

    /// At shutdown: seals the segment being written (it goes once everything in it is
    /// acknowledged, or stays for the next start) and hands the directory on.
    pub(crate) fn close(&self) {
        let mut writer = crate::sync::lock(&self.writer);
        writer.closed = true;
        if let Some(active) = writer.active.take() {
            active.segment.seal();
        }
        crate::sync::lock(&self.lock).take();
    }

    /// Seals the active segment and starts the next one, large enough for `scratch`.
    fn roll(&self, writer: &mut Writer) -> Result<(), Refused> {
        if let Some(active) = writer.active.take() {
            active.segment.seal();
        }
        // The new segment needs the context too: at most this much.
        let bytes = SEGMENT_BYTES.max(HEADER_LEN + 2 * writer.scratch.len() + ENTRY_HEADER_LEN);
        if self.on_disk.load(Ordering::SeqCst) + bytes as u64 > self.max_bytes {
            return Err(Refused::Full);
        }
        let path = segment_path(&self.dir, writer.next_number);
        writer.next_number += 1;
        let file = MappedFile::create(&path, &format::header(), bytes).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            Refused::Io(e)
        })?;
        writer.active = Some(Active {
            file,
            at: HEADER_LEN,
            segment: Arc::new(Segment::new(path, bytes as u64, &self.on_disk)),
            contexts: HashSet::new(),
        });
        Ok(())
    }
}

impl Active {
    fn fits(&self, len: usize) -> bool {
        // The rest of the file stays zero-filled after the entry: its end is visible.
        self.at + len <= self.segment.bytes as usize
    }
}

/// Encodes into `writer.scratch` the record's context (unless the active segment has it) and
/// the record; returns whether the context was written.
fn encode(writer: &mut Writer, context: &Resolved, record: &EncodedRecord) -> bool {
    writer.scratch.clear();
    let has_context = writer
        .active
        .as_ref()
        .is_some_and(|active| active.contexts.contains(&context.id));
    if !has_context {
        let resource = context.run.encoded();
        Entry::Context {
            id: context.id,
            resource: &resource.resource,
            schema_url: &resource.schema_url,
            attributes: context.encoded_attributes(),
        }
        .encode(&mut writer.scratch);
    }
    Entry::Record {
        context: context.id,
        scope: record.scope(),
        head: record.head(),
        tail: record.tail(),
    }
    .encode(&mut writer.scratch);
    !has_context
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.{EXTENSION}"))
}

/// The segments in `dir`, by number.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = (path.extension().and_then(|e| e.to_str()) == Some(EXTENSION))
            .then(|| path.file_stem()?.to_str())
            .flatten()
            .and_then(|stem| u64::from_str_radix(stem, 16).ok());
        if let Some(number) = number {
            found.push((number, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads every segment a dead process left; returns its records and the next segment number.
fn recover(dir: &Path, on_disk: &Arc<AtomicU64>) -> std::io::Result<(Recovered, u64)> {
    let mut recovered = Recovered::default();
    let mut next_number = 0;
    for (number, path) in segments(dir)? {
        next_number = number + 1;
        let bytes = std::fs::read(&path)?;
        let segment = Arc::new(Segment::new(path, bytes.len() as u64, on_disk));
        match format::read(&bytes) {
            Ok(reading) => {
                recovered.torn += u64::from(reading.torn);
                let records = rebuild(&reading.entries, &segment);
                recovered.torn += u64::from(records.len() < count_records(&reading.entries));
                segment
                    .written
                    .store(records.len() as u64, Ordering::SeqCst);
                recovered.records.extend(records);
            }
            // Not ours, or a newer version: leave it for whoever wrote it, but say so.
            Err(_) => {
                recovered.torn += 1;
                segment.removed.store(true, Ordering::SeqCst);
                on_disk.fetch_sub(segment.bytes, Ordering::SeqCst);
                continue;
            }
        }
        segment.seal();
    }
    Ok((recovered, next_number))
}

fn count_records(entries: &[Entry<'_>]) -> usize {
    entries
        .iter()
        .filter(|entry| matches!(entry, Entry::Record { .. }))
        .count()
}

/// The queued records of one segment's entries, under their original contexts.
fn rebuild(entries: &[Entry<'_>], segment: &Arc<Segment>) -> Vec<RecoveredRecord> {
    let mut contexts: HashMap<u64, Arc<Resolved>> = HashMap::new();
    let mut records = Vec::new();
    for entry in entries {
        match *entry {
            Entry::Context {
                id,
                resource,
                schema_url,
                attributes,
            } => {
                let run = Arc::new(Run::recovered(EncodedResource {
                    resource: resource.into(),
                    schema_url: schema_url.into(),
                }));
                contexts.insert(id, Arc::new(Resolved::recovered(run, attributes.into())));
            }
            Entry::Record {
                context,
                scope,
                head,
                tail,
            } => {
                // A record always follows its context; one that does not is skipped, counted.
                let Some(context) = contexts.get(&context) else {
                    continue;
                };
                let record = EncodedRecord::from_parts(head, tail, scope.to_owned());
                records.push((Arc::clone(context), record, Arc::clone(segment)));
            }
        }
    }
    records
}
