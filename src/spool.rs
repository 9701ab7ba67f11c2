//! The crash-safe spool (opt-in: `spool_dir`): every record is written to a memory-mapped
//! segment file (one per lane, `segment.rs`) before the `tracing` call that logged it returns,
//! so a process killed at any later instant leaves it on disk; a segment is retired (reused or
//! deleted) once it is full (sealed) and the collector acknowledged each of its records, which
//! its acknowledgement log records meanwhile. Records the pipeline gave up on in memory are
//! parked here and read back to be sent again (`read_back`). The next layer started on the same
//! directory finds what a dead process left (the directory's `lock` tells a live owner from a
//! dead one) and sends it first, under its original resources and timestamps (`recover.rs`).
//!
//! Files (`format.rs`): `lock`, segments `{number:016x}.spool` in the order they were taken,
//! their `.acks` logs, and `.free` segments waiting for reuse. A segment holds the contexts
//! (resource and extra attributes) of its records, so each reads on its own; mapping (`map.rs`)
//! is the one module `deny(unsafe_code)` lets through.

mod format;
mod map;
mod private;
mod recover;
mod segment;

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use self::format::Entry;
pub(crate) use self::segment::SpoolRef;
use self::segment::{Active, Disk};
pub(crate) use self::segment::{Pile, Piled};
use crate::record::EncodedRecord;
use crate::span_context::Resolved;
use crate::Error;

/// Lanes per core: a spool has this many segments being written at once, so that a thread
/// rarely waits for another (one preempted while writing, with more threads than cores).
const LANES_PER_CORE: usize = 2;

thread_local! {
    /// The lane a thread tries first: threads spread over the lanes, and each keeps writing
    /// into the same one while it is free.
    static HOME_LANE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

/// A live spool: this process holds its directory's lock for as long as it exists.
#[derive(Debug)]
pub(crate) struct Spool {
    disk: Arc<Disk>,
    /// Held (flock) until the spool closes: no other process (or layer) writes or replays
    /// this directory meanwhile.
    lock: Mutex<Option<File>>,
    /// The segments being written: a record goes into the first lane free.
    lanes: Box<[Mutex<Option<Active>>]>,
    /// The contexts of records read back, so one run's records share one run again.
    contexts: Mutex<recover::Contexts>,
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

/// A record read back, with its context and where it is in the spool.
pub(crate) type RecoveredRecord = (Arc<Resolved>, EncodedRecord, SpoolRef);

/// What a dead process left: its records wait in the spool's `Pile::Recovered`, read back
/// within the queue's memory bound and sent before any new one.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// How many records wait.
    pub(crate) records: u64,
    /// Segments that ended in a torn or corrupt entry, or could not be read at all.
    pub(crate) torn: u64,
}

impl Spool {
    /// Takes `dir` (created if missing) for this process and reads what a dead owner left.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Recovered), Error> {
        Self::open_with_lanes(dir, max_bytes, lanes())
    }

    /// [`open`](Self::open) as on a machine whose cores ask for `wanted` lanes (tests: a
    /// 64-core machine's lanes on this one).
    fn open_with_lanes(
        dir: &Path,
        max_bytes: u64,
        wanted: usize,
    ) -> Result<(Self, Recovered), Error> {
        let refused = |what: &str, e: std::io::Error| {
            Error::config("spool_dir", format!("`{}`: {what}: {e}", dir.display()))
        };
        let (lock, user) = private::claim(dir)?;
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
        let next_number = recover::next_number(dir).map_err(|e| refused("cannot read it", e))?;
        let disk = Arc::new(Disk::new(dir, max_bytes, next_number, user));
        let recovered = recover::recover(&disk).map_err(|e| refused("cannot read it", e))?;
        let lanes = fit_lanes(wanted, disk.segment_bytes(), max_bytes);
        let spool = Self {
            disk,
            lock: Mutex::new(Some(lock)),
            lanes: (0..lanes).map(|_| Mutex::new(None)).collect(),
            contexts: Mutex::default(),
        };
        Ok((spool, recovered))
    }

    /// Writes `record` (and its context, once per segment) to a segment; returns where it is,
    /// to acknowledge it by.
    pub(crate) fn append(
        &self,
        context: &Resolved,
        record: &EncodedRecord,
    ) -> Result<SpoolRef, Refused> {
        let home = HOME_LANE.try_with(|&lane| lane).unwrap_or(0);
        // A power of two: the lane's index is a mask, not a division, on every record.
        let mask = self.lanes.len() - 1;
        let free = (0..=mask).find_map(|i| match self.lanes[(home + i) & mask].try_lock() {
            Ok(lane) => Some(lane),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        });
        let mut lane = free.unwrap_or_else(|| crate::sync::lock(&self.lanes[home & mask]));
        if self.disk.closed.load(Ordering::SeqCst) {
            return Err(Refused::Closed);
        }
        self.write(&mut lane, context, record)
    }

    fn write(
        &self,
        lane: &mut Option<Active>,
        context: &Resolved,
        record: &EncodedRecord,
    ) -> Result<SpoolRef, Refused> {
        let resource = context.run.encoded();
        let context_entry = Entry::Context {
            id: context.id,
            resource: &resource.resource,
            schema_url: &resource.schema_url,
            attributes: context.encoded_attributes(),
        };
        let record_entry = Entry::Record {
            context: context.id,
            scope: record.scope(),
            head: record.head(),
            tail: record.tail(),
        };
        let both = [context_entry, record_entry];
        let mut entries = &both[..];
        if lane.as_ref().is_some_and(|a| a.has_context(context.id)) {
            entries = &both[1..];
        }
        let len = entries.iter().map(Entry::framed_len).sum();
        if !lane.as_ref().is_some_and(|a| a.fits(len)) {
            if let Some(full) = lane.take() {
                full.seal(&self.disk);
            }
            entries = &both[..];
            let len = entries.iter().map(Entry::framed_len).sum();
            *lane = Some(self.disk.take(len)?);
        }
        let Some(active) = lane.as_mut() else {
            return Err(Refused::Closed); // set just above
        };
        Ok(active.write(entries))
    }

    /// The collector acknowledged `records` (or refused them for good): they may go.
    pub(crate) fn acknowledge(&self, records: impl IntoIterator<Item = SpoolRef>) {
        // Runs of consecutive records of one segment: one acknowledgement each.
        let mut run: Option<(SpoolRef, u32)> = None;
        for at in records {
            match &mut run {
                Some((first, n))
                    if first.segment == at.segment
                        && first.ordinal.checked_add(*n) == Some(at.ordinal) =>
                {
                    *n += 1
                }
                _ => {
                    if let Some((first, n)) = run.replace((at, 1)) {
                        self.disk.acknowledge(first.segment, first.ordinal, n);
                    }
                }
            }
        }
        if let Some((first, n)) = run {
            self.disk.acknowledge(first.segment, first.ordinal, n);
        }
    }

    /// `records` (with the times they were logged) were given up in memory (a full queue,
    /// retries spent): they are only on disk now, until `read_back` reads them back.
    pub(crate) fn park(&self, records: impl IntoIterator<Item = (u64, SpoolRef, Arc<Resolved>)>) {
        let piled = records.into_iter().map(|(time, at, context)| Piled {
            time,
            at,
            context: Some(context),
        });
        self.disk.pile(Pile::Parked, piled);
    }

    /// Whether records of `pile` wait on disk.
    pub(crate) fn piled(&self, pile: Pile) -> bool {
        self.disk.piled(pile)
    }

    /// Reads the oldest records of `pile` back from disk, in the order they were logged
    /// (whichever lanes and segments hold them), until they hold about `budget` bytes or
    /// number `most` (the first record is read, however small the budget).
    pub(crate) fn read_back(&self, pile: Pile, budget: usize, most: usize) -> Vec<RecoveredRecord> {
        let wanted = self.disk.unpile(pile, most);
        let mut by_segment: HashMap<u64, Vec<u32>> = HashMap::new();
        for piled in &wanted {
            by_segment
                .entry(piled.at.segment)
                .or_default()
                .push(piled.at.ordinal);
        }
        let mut found: HashMap<SpoolRef, (Arc<Resolved>, EncodedRecord)> = HashMap::new();
        for (number, mut ordinals) in by_segment {
            // Retired meanwhile (acknowledged): nothing to send. Unreadable: left for the next
            // start, which finds it on disk.
            let Some(segment) = self.disk.live(number) else {
                continue;
            };
            let Some(file) = self.disk.read(&segment.path) else {
                continue;
            };
            ordinals.sort_unstable();
            let read = recover::records_of(&file, &mut crate::sync::lock(&self.contexts));
            for (ordinal, context, record) in read {
                if ordinals.binary_search(&ordinal).is_ok() {
                    found.insert(
                        SpoolRef {
                            segment: number,
                            ordinal,
                        },
                        (context, record),
                    );
                }
            }
        }
        let (mut records, mut bytes, mut left) = (Vec::new(), 0, Vec::new());
        for piled in wanted {
            let Some((context, record)) = found.remove(&piled.at) else {
                continue;
            };
            if bytes >= budget {
                left.push(piled);
                continue;
            }
            bytes += record.len();
            records.push((piled.context.unwrap_or(context), record, piled.at));
        }
        self.disk.pile(pile, left);
        records
    }

    /// Bytes the spool's files take now (the metrics' `zenml_otel.spool.size`).
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.disk.bytes_on_disk()
    }

    /// Writes what was spooled since the last call through to the disk (`spool_sync_millis`);
    /// returns how many segments it synced.
    pub(crate) fn sync(&self) -> std::io::Result<u64> {
        self.disk.sync()
    }

    /// At shutdown: seals every segment being written (each goes once everything in it is
    /// acknowledged, or stays for the next start) and hands the directory on.
    pub(crate) fn close(&self) {
        self.disk.close();
        for lane in &self.lanes {
            if let Some(active) = crate::sync::lock(lane).take() {
                active.seal(&self.disk);
            }
        }
        crate::sync::lock(&self.lock).take();
    }
}

/// Lanes: two per core, rounded up to a power of two.
fn lanes() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * LANES_PER_CORE).next_power_of_two()
}

/// At most as many lanes as half the spool's segments (a power of two, at least one): each
/// lane holds a segment from its first record on, so on a machine with many cores the lanes
/// alone would otherwise fill `max_spool_bytes` with nearly empty segments and refuse every
/// later record; the other half is for sealed segments waiting for their acknowledgements.
fn fit_lanes(wanted: usize, segment_bytes: usize, max_bytes: u64) -> usize {
    let segments = usize::try_from(max_bytes / segment_bytes.max(1) as u64).unwrap_or(usize::MAX);
    let most = (segments / 2).max(1);
    // The largest power of two not above `most`.
    let most = 1 << (usize::BITS - 1 - most.leading_zeros());
    wanted.clamp(1, most)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span_context::{EncodedResource, Run};

    fn context() -> Resolved {
        let run = Run::recovered(EncodedResource {
            resource: vec![1; 300].into(),
            schema_url: Vec::new().into(),
        });
        Resolved::recovered(Arc::new(run), vec![2; 100].into())
    }

    fn record(seq: u64) -> EncodedRecord {
        EncodedRecord::from_parts(&seq.to_le_bytes(), &[4; 180], "target".into())
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    /// A machine with 64 cores (128 lanes wanted) and the smallest spool: its lanes fit the
    /// budget, so 128 threads each writing a record are all spooled, none refused as full.
    #[test]
    fn lanes_fit_the_budget_on_any_number_of_cores() {
        assert_eq!(fit_lanes(128, 256 * 1024, 8 * 1024 * 1024), 16);
        assert_eq!(fit_lanes(128, 4 * 1024 * 1024, 256 * 1024 * 1024), 32);
        assert_eq!(fit_lanes(4, 4 * 1024 * 1024, 256 * 1024 * 1024), 4);
        assert_eq!(fit_lanes(4, 4 * 1024 * 1024, 8 * 1024 * 1024), 1);
        let dir = std::env::temp_dir().join(format!("zenml-otel-lanes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, _) = Spool::open_with_lanes(&dir, 8 * 1024 * 1024, 128).unwrap();
        let spool = Arc::new(spool);
        let context = Arc::new(context());
        let threads: Vec<_> = (0..128)
            .map(|seq| {
                let (spool, context) = (Arc::clone(&spool), Arc::clone(&context));
                std::thread::spawn(move || spool.append(&context, &record(seq)).is_ok())
            })
            .collect();
        let spooled = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(spooled, 128, "records refused with a healthy collector");
        spool.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `sync` writes through what was added since it last ran, and only that.
    #[test]
    fn sync_writes_through_what_is_new() {
        let dir = std::env::temp_dir().join(format!("zenml-otel-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, _) = Spool::open(&dir, 8 * 1024 * 1024).unwrap();
        assert_eq!(spool.sync().unwrap(), 0, "nothing written yet");
        let context = context();
        for seq in 0..10 {
            spool.append(&context, &record(seq)).unwrap();
        }
        assert_eq!(spool.sync().unwrap(), 1);
        assert_eq!(spool.sync().unwrap(), 0, "nothing new");
        spool.append(&context, &record(10)).unwrap();
        assert_eq!(spool.sync().unwrap(), 1);
        spool.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Segments are reused once acknowledged (the disk holds a few, not one per segment ever
    /// written), and a reused segment's old entries are never read back; with the
    /// acknowledgement logs, the next start after a kill finds exactly the records never
    /// acknowledged.
    #[test]
    fn reused_segments_hold_only_what_is_unacknowledged() {
        let dir = std::env::temp_dir().join(format!("zenml-otel-reuse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // 8 MiB: 256 KiB segments, about 1,230 records each.
        let (spool, recovered) = Spool::open(&dir, 8 * 1024 * 1024).unwrap();
        assert_eq!(recovered.records, 0);
        let (context, n, unacknowledged) = (context(), 20_000, 100);
        let (mut most_files, mut acknowledged) = (0, 0);
        let mut pending = Vec::new();
        for seq in 0..n {
            pending.push(spool.append(&context, &record(seq)).unwrap());
            if pending.len() == 500 && seq < n - unacknowledged {
                spool.acknowledge(pending.drain(..));
                acknowledged = seq + 1;
                most_files = most_files.max(files(&dir));
            }
        }
        let last_segment = pending.last().unwrap().segment;
        assert!(last_segment > 20, "{last_segment} segments were taken");
        // The lock, the lanes' segments and their logs, and a few free ones.
        assert!(most_files <= 1 + 2 * lanes() + 4 + 1, "{most_files} files");
        drop(spool); // killed: nothing sealed, nothing acknowledged after this
        let (spool, recovered) = Spool::open(&dir, 8 * 1024 * 1024).unwrap();
        assert_eq!(recovered.records, n - acknowledged);
        let seqs: Vec<u64> = spool
            .read_back(Pile::Recovered, usize::MAX, usize::MAX)
            .iter()
            .map(|(_, record, _)| u64::from_le_bytes(record.head().try_into().unwrap()))
            .collect();
        assert_eq!(seqs, (acknowledged..n).collect::<Vec<_>>());
        assert_eq!(recovered.torn, 0);
        spool.close();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
