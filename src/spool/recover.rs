//! Reading back what a dead process left in a spool directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Entry};
use super::segment::{Disk, Pile, Piled, SpoolRef, ACKS_EXTENSION, EXTENSION, FREE_EXTENSION};
use super::Recovered;
use crate::record::EncodedRecord;
use crate::span_context::{EncodedResource, Resolved, Run};

/// The spool's files with `extension`, by number.
pub(super) fn files(dir: &Path, extension: &str) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = (path.extension().and_then(|e| e.to_str()) == Some(extension))
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

/// The number after every file's in `dir`.
pub(super) fn next_number(dir: &Path) -> std::io::Result<u64> {
    let mut next = 0;
    for extension in [EXTENSION, FREE_EXTENSION] {
        if let Some((number, _)) = files(dir, extension)?.last() {
            next = next.max(number + 1);
        }
    }
    Ok(next)
}

/// Reads every segment a dead process left (deleting the free ones, which hold only
/// acknowledged records).
pub(super) fn recover(disk: &Disk) -> std::io::Result<Recovered> {
    // What cannot be removed (a planted directory) stays, harmless: nothing reads it.
    for (_, path) in files(&disk.dir, FREE_EXTENSION)? {
        let _ = std::fs::remove_file(path);
    }
    // The log of a segment that is gone.
    for (_, path) in files(&disk.dir, ACKS_EXTENSION)? {
        if std::fs::symlink_metadata(path.with_extension(EXTENSION)).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
    let mut recovered = Recovered::default();
    for (number, path) in files(&disk.dir, EXTENSION)? {
        // Not a regular file of this user's (planted, a FIFO, a link): skipped, counted.
        let Some(bytes) = disk.read(&path) else {
            recovered.torn += 1;
            continue;
        };
        disk.count(bytes.len() as u64);
        let segment = disk.register(number, path, bytes.len() as u64);
        match format::read(&bytes) {
            Ok(reading) => {
                let mut records = rebuild(&reading.entries, &mut Contexts::default());
                let whole = records.len() == count_records(&reading.entries);
                // What a collector acknowledged before the kill is not sent again.
                let acknowledged =
                    read_acknowledged(disk, &segment.path.with_extension(ACKS_EXTENSION));
                records.retain(|(ordinal, ..)| {
                    !acknowledged.iter().any(|&(first, count)| {
                        (first..first.saturating_add(count)).contains(ordinal)
                    })
                });
                recovered.torn += u64::from(reading.torn || !whole);
                segment.set_written(records.len() as u64);
                recovered.records += records.len() as u64;
                // Only their places are kept: the records are read back within the queue's
                // memory bound, not all at once.
                disk.pile(
                    Pile::Recovered,
                    records.into_iter().map(|(ordinal, _, record)| Piled {
                        time: record.time(),
                        at: SpoolRef {
                            segment: number,
                            ordinal,
                        },
                        context: None,
                    }),
                );
                disk.seal(&segment, None);
            }
            // Not ours, or a newer version: leave it for whoever wrote it, but say so.
            Err(_) => {
                recovered.torn += 1;
                disk.disown(&segment);
            }
        }
    }
    Ok(recovered)
}

/// The records of a segment file, with their ordinals, under contexts from `contexts` (so the
/// records of one run share one run again, whichever segment they were read from).
pub(super) fn records_of(
    file: &[u8],
    contexts: &mut Contexts,
) -> Vec<(u32, Arc<Resolved>, EncodedRecord)> {
    format::read(file).map_or_else(
        |_| Vec::new(),
        |reading| rebuild(&reading.entries, contexts),
    )
}

/// The contexts and runs of records read back, by content: records of one run read from
/// different segments (lanes) share one `Run`, so their order and their requests' grouping
/// hold as for records that never left memory.
#[derive(Debug, Default)]
pub(crate) struct Contexts {
    /// By the encoded resource and schema URL.
    runs: HashMap<Box<[u8]>, Arc<Run>>,
    /// By the run's address (held in `runs`) and the encoded attributes.
    resolved: HashMap<(usize, Box<[u8]>), Arc<Resolved>>,
}

impl Contexts {
    /// More distinct contexts than this are forgotten, and made again when met.
    const MAX: usize = 4096;

    fn get(&mut self, resource: &[u8], schema_url: &[u8], attributes: &[u8]) -> Arc<Resolved> {
        if self.runs.len() > Self::MAX || self.resolved.len() > Self::MAX {
            *self = Self::default();
        }
        // Length-prefixed, so no two (resource, schema URL) pairs make one key.
        let mut key = Vec::with_capacity(8 + resource.len() + schema_url.len());
        key.extend_from_slice(&(resource.len() as u64).to_le_bytes());
        key.extend_from_slice(resource);
        key.extend_from_slice(schema_url);
        let run = self
            .runs
            .entry(key.into())
            .or_insert_with(|| {
                Arc::new(Run::recovered(EncodedResource {
                    resource: resource.into(),
                    schema_url: schema_url.into(),
                }))
            })
            .clone();
        let key = (Arc::as_ptr(&run) as usize, attributes.into());
        let resolved = self
            .resolved
            .entry(key)
            .or_insert_with(|| Arc::new(Resolved::recovered(run, attributes.into())));
        Arc::clone(resolved)
    }
}

/// The `(first, count)` ranges of an acknowledgement log; none if it is missing (a torn last
/// entry is ignored).
fn read_acknowledged(disk: &Disk, path: &Path) -> Vec<(u32, u32)> {
    let bytes = disk.read(path).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|entry| {
            let word =
                |at: usize| u32::from_le_bytes(entry[at..at + 4].try_into().unwrap_or_default());
            (word(0), word(4))
        })
        .collect()
}

fn count_records(entries: &[Entry<'_>]) -> usize {
    entries
        .iter()
        .filter(|entry| matches!(entry, Entry::Record { .. }))
        .count()
}

/// The records of one segment's entries, with their ordinals, under their original contexts.
fn rebuild(
    entries: &[Entry<'_>],
    known: &mut Contexts,
) -> Vec<(u32, Arc<Resolved>, EncodedRecord)> {
    let mut contexts: HashMap<u64, Arc<Resolved>> = HashMap::new();
    let mut records = Vec::new();
    let mut ordinal = 0;
    for entry in entries {
        match *entry {
            Entry::Context {
                id,
                resource,
                schema_url,
                attributes,
            } => {
                contexts.insert(id, known.get(resource, schema_url, attributes));
            }
            Entry::Record {
                context,
                scope,
                head,
                tail,
            } => {
                // A record always follows its context; one that does not is skipped, counted.
                if let Some(context) = contexts.get(&context) {
                    let record = EncodedRecord::from_parts(head, tail, scope.to_owned());
                    records.push((ordinal, Arc::clone(context), record));
                }
                ordinal += 1;
            }
        }
    }
    records
}
