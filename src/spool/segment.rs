//! A segment's life: made (or taken from the free pool) for one of the spool's lanes, written
//! under that lane's lock, sealed when full (or at shutdown), and once
//! the collector acknowledged each of its records either recycled into the free pool or
//! deleted. Recycling keeps a segment's pages mapped, allocated and writable: making a fresh
//! segment costs the kernel about 4 ms per 4 MiB (page-cache pages zeroed, then one
//! write-protect fault per page on ext4), which on the logging thread was most of the spool's
//! cost per record.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::format::{self, Entry, ENTRY_HEADER_LEN, HEADER_LEN};
use super::map::MappedFile;
use super::Refused;
use crate::span_context::Resolved;

/// A live segment's file name, and a free one's (acknowledged, waiting to be reused).
pub(super) const EXTENSION: &str = "spool";
pub(super) const FREE_EXTENSION: &str = "free";
/// A segment's acknowledgement log: which of its records a collector has, so that a start
/// after a kill does not send them again.
pub(super) const ACKS_EXTENSION: &str = "acks";
/// Free segments kept for reuse; more are deleted.
const MAX_FREE: usize = 4;
/// A segment is `max_spool_bytes` / this, within the bounds below: each writing thread holds
/// one, so a small spool still has room for several threads.
const SEGMENTS_PER_SPOOL: u64 = 32;
const MIN_SEGMENT_BYTES: u64 = 256 * 1024;
const MAX_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const SEALED: u64 = 1 << 63;

/// The spool's directory and what is on disk in it, shared by its segments.
#[derive(Debug)]
pub(super) struct Disk {
    pub(super) dir: PathBuf,
    max_bytes: u64,
    /// The size of a segment (one holding a larger record is larger).
    segment_bytes: usize,
    /// Bytes of the segment files that exist, free ones included.
    on_disk: AtomicU64,
    next_number: AtomicU64,
    /// Set at shutdown: nothing more is written, recycled or kept free.
    pub(super) closed: AtomicBool,
    free: Mutex<Vec<MappedFile>>,
    /// The segments not yet retired, by number.
    live: Mutex<HashMap<u64, Arc<Segment>>>,
    /// Records only on disk, by pile, waiting to be read back in the order they were logged:
    /// given up in memory (a full queue, retries spent), or left by a dead process.
    /// Keyed by time and place; a parked record keeps its live context (a run's `Arc`), so
    /// that it goes in one request with the run's newer records.
    piles: [Mutex<PileOrder>; 2],
    /// This process's user: the only owner a segment read back may have.
    user: u32,
}

impl Disk {
    /// Bytes of the segment files that exist now, free ones included.
    pub(super) fn bytes_on_disk(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }

    pub(super) fn new(dir: &Path, max_bytes: u64, next_number: u64, user: u32) -> Self {
        let segment_bytes = (max_bytes / SEGMENTS_PER_SPOOL)
            .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
            .next_multiple_of(4096);
        Self {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: segment_bytes as usize,
            on_disk: AtomicU64::new(0),
            next_number: AtomicU64::new(next_number),
            closed: AtomicBool::new(false),
            free: Mutex::new(Vec::new()),
            live: Mutex::new(HashMap::new()),
            piles: Default::default(),
            user,
        }
    }

    /// The size of a segment.
    pub(super) fn segment_bytes(&self) -> usize {
        self.segment_bytes
    }

    /// A segment file's bytes, if it is a regular file of this user's that fits the spool.
    pub(super) fn read(&self, path: &Path) -> Option<Vec<u8>> {
        super::private::read(path, self.user, self.max_bytes)
    }

    pub(super) fn path(&self, number: u64, extension: &str) -> PathBuf {
        self.dir.join(format!("{number:016x}.{extension}"))
    }

    /// A segment with room for `len` bytes of entries: a free one if one fits, else a new file.
    pub(super) fn take(self: &Arc<Self>, len: usize) -> Result<Active, Refused> {
        let number = self.next_number.fetch_add(1, Ordering::SeqCst);
        let path = self.path(number, EXTENSION);
        let needed = HEADER_LEN + len + ENTRY_HEADER_LEN;
        let reused = (needed <= self.segment_bytes)
            .then(|| crate::sync::lock(&self.free).pop())
            .flatten();
        let map = match reused {
            Some(map) => {
                let (free, bytes) = (map.path().to_owned(), map.len() as u64);
                map.rename(&path).map_err(|e| {
                    self.delete(&free, bytes);
                    Refused::Io(e)
                })?
            }
            None => self.create(&path, needed.max(self.segment_bytes))?,
        };
        let segment = self.register(number, path, map.len() as u64);
        Ok(Active {
            map,
            at: HEADER_LEN,
            segment,
            contexts: Vec::new(),
        })
    }

    fn create(&self, path: &Path, bytes: usize) -> Result<MappedFile, Refused> {
        if self.on_disk.load(Ordering::SeqCst) + bytes as u64 > self.max_bytes {
            return Err(Refused::Full);
        }
        let map = MappedFile::create(path, &format::header(), bytes).map_err(|e| {
            let _ = std::fs::remove_file(path);
            Refused::Io(e)
        })?;
        self.on_disk.fetch_add(bytes as u64, Ordering::SeqCst);
        Ok(map)
    }

    /// Counts a file a dead process left (its records are being sent again).
    pub(super) fn count(&self, bytes: u64) {
        self.on_disk.fetch_add(bytes, Ordering::SeqCst);
    }

    /// A segment of this spool, found by number until it is retired.
    pub(super) fn register(&self, number: u64, path: PathBuf, bytes: u64) -> Arc<Segment> {
        let segment = Arc::new(Segment::new(number, path, bytes));
        crate::sync::lock(&self.live).insert(number, Arc::clone(&segment));
        segment
    }

    /// A collector acknowledged `n` of segment `number`'s records.
    /// A collector acknowledged `count` records of segment `number` from ordinal `first` on:
    /// logged in the segment's acknowledgement log (8 bytes: `first`, `count`, as `u32` LE),
    /// unless that makes the segment done.
    pub(super) fn acknowledge(&self, number: u64, first: u32, count: u32) {
        let Some(segment) = crate::sync::lock(&self.live).get(&number).cloned() else {
            return;
        };
        let acknowledged = segment
            .acknowledged
            .fetch_add(u64::from(count), Ordering::SeqCst);
        let written = segment.written.0.load(Ordering::SeqCst);
        let done = written & SEALED != 0 && acknowledged + u64::from(count) >= written & !SEALED;
        if !done {
            segment.log_acknowledged(first, count);
        }
        self.retire_when_done(&segment);
    }

    /// At shutdown: nothing is written or kept free any more; the free segments go.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for map in std::mem::take(&mut *crate::sync::lock(&self.free)) {
            self.delete(map.path(), map.len() as u64);
        }
    }

    /// A done segment: reused while the spool is open and the pool has room, else deleted.
    fn retire(&self, path: &Path, bytes: u64, map: Option<MappedFile>) {
        if let Some(map) = map.filter(|map| map.len() == self.segment_bytes) {
            if !self.closed.load(Ordering::SeqCst) {
                let mut free = crate::sync::lock(&self.free);
                if free.len() < MAX_FREE {
                    let number = self.next_number.fetch_add(1, Ordering::SeqCst);
                    if let Ok(map) = map.recycle(&self.path(number, FREE_EXTENSION), HEADER_LEN) {
                        let _ = std::fs::remove_file(path.with_extension(ACKS_EXTENSION));
                        free.push(map);
                        return;
                    }
                }
            }
        }
        self.delete(path, bytes);
    }

    /// No more records go into `segment`; `map` is its writer's mapping, for reuse.
    pub(super) fn seal(&self, segment: &Segment, map: Option<MappedFile>) {
        if map.is_some() {
            *crate::sync::lock(&segment.map) = map;
        }
        segment.written.0.fetch_or(SEALED, Ordering::SeqCst);
        self.retire_when_done(segment);
    }

    /// Forgets a segment that is not this spool's to remove (unreadable).
    pub(super) fn disown(&self, segment: &Segment) {
        segment.retired.store(true, Ordering::SeqCst);
        self.forget(segment.number);
        self.on_disk.fetch_sub(segment.bytes, Ordering::SeqCst);
    }

    fn retire_when_done(&self, segment: &Segment) {
        let written = segment.written.0.load(Ordering::SeqCst);
        let done = written & SEALED != 0
            && segment.acknowledged.load(Ordering::SeqCst) >= written & !SEALED;
        if done && !segment.retired.swap(true, Ordering::SeqCst) {
            let map = crate::sync::lock(&segment.map).take();
            self.forget(segment.number);
            self.retire(&segment.path, segment.bytes, map);
        }
    }

    /// Writes the records added since the last call through to the disk (`fdatasync`), and the
    /// directory when a segment was; returns how many segments it synced.
    pub(super) fn sync(&self) -> std::io::Result<u64> {
        let segments: Vec<Arc<Segment>> = crate::sync::lock(&self.live).values().cloned().collect();
        let mut synced = 0;
        for segment in segments {
            let written = segment.written.0.load(Ordering::Acquire) & !SEALED;
            if segment.synced.load(Ordering::Acquire) == written {
                continue;
            }
            if let Some(file) = &segment.file {
                file.sync_data()?;
                synced += 1;
            }
            segment.synced.store(written, Ordering::Release);
        }
        if synced > 0 {
            // A new segment's name must survive too.
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(synced)
    }

    /// Records (by time, segment and ordinal) that are now only on disk, in `pile`.
    pub(super) fn pile(&self, pile: Pile, records: impl IntoIterator<Item = Piled>) {
        crate::sync::lock(&self.piles[pile as usize]).extend(
            records
                .into_iter()
                .map(|piled| ((piled.time, piled.at), piled.context)),
        );
    }

    /// The `most` oldest records of `pile` (taken off it: the caller sends them or piles them
    /// again).
    pub(super) fn unpile(&self, pile: Pile, most: usize) -> Vec<Piled> {
        let mut piled = crate::sync::lock(&self.piles[pile as usize]);
        std::iter::from_fn(|| piled.pop_first())
            .take(most)
            .map(|((time, at), context)| Piled { time, at, context })
            .collect()
    }

    /// Whether `pile` holds records.
    pub(super) fn piled(&self, pile: Pile) -> bool {
        !crate::sync::lock(&self.piles[pile as usize]).is_empty()
    }

    /// A live segment by number; `None` once it is retired (its records all acknowledged).
    pub(super) fn live(&self, number: u64) -> Option<Arc<Segment>> {
        crate::sync::lock(&self.live).get(&number).cloned()
    }

    fn forget(&self, number: u64) {
        crate::sync::lock(&self.live).remove(&number);
    }

    fn delete(&self, path: &Path, bytes: u64) {
        // A file that cannot be removed is replayed by the next start: at least once.
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(path.with_extension(ACKS_EXTENSION));
        self.on_disk.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// A pile: each record's context by its time and place.
type PileOrder = BTreeMap<(u64, SpoolRef), Option<Arc<Resolved>>>;

/// A record waiting on disk: read back by the time it was logged, then by where it is.
#[derive(Debug, Clone)]
pub(crate) struct Piled {
    pub(crate) time: u64,
    pub(crate) at: SpoolRef,
    /// The record's context in this process (`None` for a dead process's records: theirs is
    /// read with them).
    pub(crate) context: Option<Arc<Resolved>>,
}

/// Which records wait on disk to be read back and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pile {
    /// Given up in memory by this process (a full queue, retries spent): `stats().spooled`.
    Parked = 0,
    /// Left by a dead process: sent before anything else, counted `recovered` once read back.
    Recovered = 1,
}

/// One segment file: retired once sealed and every record in it was acknowledged.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) number: u64,
    pub(super) path: PathBuf,
    /// For `fdatasync` (`spool_sync_millis`); `None` if it could not be opened.
    file: Option<std::fs::File>,
    /// Records written when it was last synced.
    synced: AtomicU64,
    /// The acknowledgement log, opened at the first acknowledgement.
    acks: Mutex<Option<std::fs::File>>,
    bytes: u64,
    /// Records written, and `SEALED` once no more go in: changed only by whoever holds the
    /// lane writing the segment (or by recovery, before any lane exists).
    written: Padded<AtomicU64>,
    acknowledged: AtomicU64,
    retired: AtomicBool,
    /// The mapping, handed over by its writer when it seals the segment, for reuse.
    map: Mutex<Option<MappedFile>>,
}

impl Segment {
    /// Appends to the acknowledgement log. A failure only costs duplicates after a kill.
    fn log_acknowledged(&self, first: u32, count: u32) {
        use std::io::Write as _;
        let mut acks = crate::sync::lock(&self.acks);
        if acks.is_none() {
            let path = self.path.with_extension(ACKS_EXTENSION);
            *acks =
                super::private::open(std::fs::OpenOptions::new().create(true).append(true), &path)
                    .ok();
        }
        if let Some(file) = acks.as_mut() {
            let mut entry = [0; 8];
            entry[..4].copy_from_slice(&first.to_le_bytes());
            entry[4..].copy_from_slice(&count.to_le_bytes());
            let _ = file.write_all(&entry);
        }
    }
}

/// Its own cache line: the writing thread's counter is not slowed by the senders' updates.
#[derive(Debug)]
#[repr(align(64))]
struct Padded<T>(T);

impl Segment {
    fn new(number: u64, path: PathBuf, bytes: u64) -> Self {
        Self {
            number,
            file: std::fs::File::open(&path).ok(),
            synced: AtomicU64::new(0),
            acks: Mutex::new(None),
            path,
            bytes,
            written: Padded(AtomicU64::new(0)),
            acknowledged: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            map: Mutex::new(None),
        }
    }

    /// Records read back from a dead process's segment.
    pub(super) fn set_written(&self, n: u64) {
        self.written.0.store(n, Ordering::SeqCst);
    }
}

/// Where a spooled record is: its segment's number and its place among the segment's records
/// (a number, not a shared pointer: the logging thread and the senders do not pass a reference
/// count back and forth for every record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SpoolRef {
    pub(crate) segment: u64,
    pub(crate) ordinal: u32,
}

/// The segment a thread writes into now.
#[derive(Debug)]
pub(super) struct Active {
    map: MappedFile,
    /// Where the next entry goes.
    at: usize,
    pub(super) segment: Arc<Segment>,
    /// The contexts written into this segment (a thread's records mostly share one or two).
    contexts: Vec<u64>,
}

impl Active {
    pub(super) fn has_context(&self, id: u64) -> bool {
        self.contexts.iter().rev().any(|&known| known == id)
    }

    pub(super) fn fits(&self, len: usize) -> bool {
        self.at + len <= self.map.len()
    }

    /// Writes `entries` (which fit) as one record; returns where the record is. A kill before
    /// its bytes are whole leaves a torn entry that no reader takes.
    pub(super) fn write(&mut self, entries: &[Entry<'_>]) -> SpoolRef {
        let bytes = self.map.bytes_mut();
        for entry in entries {
            let entry_end = self.at + entry.framed_len();
            // A recycled segment holds the previous generation's entries past the data: each
            // entry's end is marked (a zero length) before the entry is written, and the entry
            // writes its length last, so a reader stops at the zero length where this entry
            // goes until it is whole, and at a kill mid-way it finds a torn entry, never a way
            // into old entries.
            if let Some(terminator) = bytes.get_mut(entry_end..entry_end + 4) {
                terminator.fill(0);
            }
            std::sync::atomic::compiler_fence(Ordering::Release);
            entry.write(&mut bytes[self.at..entry_end]);
            if let Entry::Context { id, .. } = entry {
                self.contexts.push(*id);
            }
            self.at = entry_end;
        }
        // Counted once its bytes are in: a concurrent sync then never marks a record synced
        // before it is in the pages it writes through. Only the lane's holder changes the
        // count (sealing too), so no read-modify-write.
        let written = &self.segment.written.0;
        let ordinal = written.load(Ordering::Acquire);
        written.store(ordinal + 1, Ordering::Release);
        SpoolRef {
            segment: self.segment.number,
            ordinal: ordinal as u32,
        }
    }

    /// Seals the segment and hands it the mapping, for reuse once it is acknowledged.
    pub(super) fn seal(self, disk: &Disk) {
        disk.seal(&self.segment, Some(self.map));
    }
}
