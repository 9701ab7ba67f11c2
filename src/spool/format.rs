//! The spool's on-disk format, version 1: its constants and the entry codec. The format is
//! specified once, in docs/spool.md ("The on-disk format, version 1"): segments of a 16-byte
//! header and length- and CRC-framed entries (a context, or a record of one), `.acks` logs
//! beside them. The Python helper reads the same files (`python/src/zenml_otel/_spool.py`);
//! python/tests/test_shared_constants.py checks both sides agree.

pub(crate) const MAGIC: &[u8; 8] = b"ZOTSPOOL";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 16;
/// An entry's length and CRC.
pub(crate) const ENTRY_HEADER_LEN: usize = 8;

const CONTEXT: u8 = 1;
const RECORD: u8 = 2;

/// A segment's header.
pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// What an entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    Context {
        id: u64,
        resource: &'a [u8],
        schema_url: &'a [u8],
        attributes: &'a [u8],
    },
    Record {
        context: u64,
        scope: &'a str,
        head: &'a [u8],
        tail: &'a [u8],
    },
}

impl Entry<'_> {
    /// Appends the entry, framed (length, CRC, payload), to `out`.
    #[cfg(test)]
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.framed_len(), 0);
        self.write(&mut out[start..]);
    }

    /// The entry's length, framed.
    pub(crate) fn framed_len(&self) -> usize {
        ENTRY_HEADER_LEN
            + 1
            + 8
            + match *self {
                Entry::Context {
                    resource,
                    schema_url,
                    attributes,
                    ..
                } => prefixed_len(resource) + prefixed_len(schema_url) + prefixed_len(attributes),
                Entry::Record {
                    scope, head, tail, ..
                } => prefixed_len(scope.as_bytes()) + prefixed_len(head) + tail.len(),
            }
    }

    /// Writes the entry, framed, into `out`, which is `framed_len()` bytes: straight into a
    /// segment's mapping, with no copy on the way.
    pub(crate) fn write(&self, out: &mut [u8]) {
        let (header, payload) = out.split_at_mut(ENTRY_HEADER_LEN);
        let mut rest = &mut payload[..];
        match *self {
            Entry::Context {
                id,
                resource,
                schema_url,
                attributes,
            } => {
                put(&mut rest, &[CONTEXT]);
                put(&mut rest, &id.to_le_bytes());
                for part in [resource, schema_url, attributes] {
                    put_prefixed(&mut rest, part);
                }
            }
            Entry::Record {
                context,
                scope,
                head,
                tail,
            } => {
                put(&mut rest, &[RECORD]);
                put(&mut rest, &context.to_le_bytes());
                put_prefixed(&mut rest, scope.as_bytes());
                put_prefixed(&mut rest, head);
                put(&mut rest, tail);
            }
        }
        // The checksum, then the length: until the length is there, a reader of a segment
        // being written sees the zero length that ends its data.
        let crc = crc32(payload);
        header[4..].copy_from_slice(&crc.to_le_bytes());
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::Release);
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    }
}

/// CRC-32 (IEEE, as zlib's). A copy of one hasher rather than `crc32fast::hash`, which
/// detects the CPU's features anew for every entry (a fifth of the checksum's cost on a
/// 230-byte record).
fn crc32(bytes: &[u8]) -> u32 {
    static NEW: std::sync::LazyLock<crc32fast::Hasher> =
        std::sync::LazyLock::new(crc32fast::Hasher::new);
    let mut hasher = NEW.clone();
    hasher.update(bytes);
    hasher.finalize()
}

fn prefixed_len(bytes: &[u8]) -> usize {
    prost::encoding::encoded_len_varint(bytes.len() as u64) + bytes.len()
}

/// Copies `bytes` to the front of `rest` and moves past them.
fn put(rest: &mut &mut [u8], bytes: &[u8]) {
    let (front, back) = std::mem::take(rest).split_at_mut(bytes.len());
    front.copy_from_slice(bytes);
    *rest = back;
}

fn put_prefixed(rest: &mut &mut [u8], bytes: &[u8]) {
    let mut len = bytes.len() as u64;
    while len >= 0x80 {
        put(rest, &[(len as u8) | 0x80]);
        len >>= 7;
    }
    put(rest, &[len as u8]);
    put(rest, bytes);
}

/// Why a segment cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    NotASegment,
    Version(u32),
}

/// A segment's whole entries, and whether a torn or corrupt one ended it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reading<'a> {
    pub(crate) entries: Vec<Entry<'a>>,
    pub(crate) torn: bool,
}

/// Reads a segment's bytes. Never panics, whatever they are.
pub(crate) fn read(segment: &[u8]) -> Result<Reading<'_>, Unreadable> {
    if segment.len() < HEADER_LEN || &segment[..8] != MAGIC {
        return Err(Unreadable::NotASegment);
    }
    let version = u32_at(segment, 8);
    if version != VERSION {
        return Err(Unreadable::Version(version));
    }
    let mut reading = Reading::default();
    let mut rest = &segment[HEADER_LEN..];
    loop {
        if rest.len() < ENTRY_HEADER_LEN {
            // The file's end, or a length cut short.
            reading.torn = rest.iter().any(|&b| b != 0);
            break;
        }
        let len = u32_at(rest, 0) as usize;
        if len == 0 {
            // The data's end: what follows is zeros, or a recycled segment's old entries.
            break;
        }
        let entry = rest
            .get(ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len)
            .filter(|payload| crc32(payload) == u32_at(rest, 4))
            .and_then(entry);
        let Some(entry) = entry else {
            reading.torn = true;
            break;
        };
        reading.entries.push(entry);
        rest = &rest[ENTRY_HEADER_LEN + len..];
    }
    Ok(reading)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn entry(payload: &[u8]) -> Option<Entry<'_>> {
    let (&kind, rest) = payload.split_first()?;
    let (id, mut rest) = (
        u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
        rest.get(8..)?,
    );
    match kind {
        CONTEXT => {
            let resource = take(&mut rest)?;
            let schema_url = take(&mut rest)?;
            let attributes = take(&mut rest)?;
            rest.is_empty().then_some(Entry::Context {
                id,
                resource,
                schema_url,
                attributes,
            })
        }
        RECORD => {
            let scope = std::str::from_utf8(take(&mut rest)?).ok()?;
            let head = take(&mut rest)?;
            Some(Entry::Record {
                context: id,
                scope,
                head,
                tail: rest,
            })
        }
        _ => None,
    }
}

/// A varint-length-prefixed slice.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut cursor = *rest;
    let len = usize::try_from(prost::encoding::decode_varint(&mut cursor).ok()?).ok()?;
    let bytes = cursor.get(..len)?;
    *rest = &cursor[len..];
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A context id, its resource, and a record's scope, head and tail.
    type Generated = (u64, Vec<u8>, String, Vec<u8>, Vec<u8>);

    fn entries() -> impl Strategy<Value = Vec<Generated>> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..300);
        prop::collection::vec((0u64..4, bytes(), "\\PC{0,12}", bytes(), bytes()), 1..8)
    }

    type Written<'a> = (Vec<u8>, Vec<Entry<'a>>, Vec<usize>);

    /// The segment, its entries, and where each entry ends.
    fn encoded(entries: &[Generated]) -> Written<'_> {
        let mut segment = header().to_vec();
        let mut written = Vec::new();
        let mut ends = vec![HEADER_LEN];
        for (id, resource, scope, head, tail) in entries {
            let context = Entry::Context {
                id: *id,
                resource,
                schema_url: &[],
                attributes: head,
            };
            let record = Entry::Record {
                context: *id,
                scope,
                head,
                tail,
            };
            for entry in [context, record] {
                entry.encode(&mut segment);
                written.push(entry);
                ends.push(segment.len());
            }
        }
        (segment, written, ends)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A segment cut at any byte (a kill mid-write) reads as a prefix of what was written,
        /// never garbage; zeros after it (the preallocated rest) change nothing.
        #[test]
        fn a_segment_cut_anywhere_reads_as_a_prefix(entries in entries(), zeros in 0usize..64) {
            let (segment, written, ends) = encoded(&entries);
            let whole = read(&segment).unwrap();
            prop_assert_eq!(&whole.entries, &written);
            prop_assert!(!whole.torn);
            for cut in HEADER_LEN..=segment.len() {
                let mut file = segment[..cut].to_vec();
                file.resize(cut + zeros, 0);
                let reading = read(&file).unwrap();
                let n = reading.entries.len();
                prop_assert_eq!(&reading.entries[..], &written[..n], "cut at {}", cut);
                // Every entry that ends before the cut is read (one the zeros happen to
                // complete may be too: its bytes are the same).
                prop_assert!(ends.get(n + 1).is_none_or(|&end| end > cut), "cut at {}", cut);
                // Torn unless nothing but zeros follows the last whole entry (a cut inside a
                // length whose first byte is zero leaves only zeros).
                let after = &file[ends[n].min(file.len())..];
                prop_assert_eq!(reading.torn, after.iter().any(|&b| b != 0), "cut at {}", cut);
            }
        }

        /// A flipped byte anywhere after the header never yields an entry that was not written.
        #[test]
        fn a_corrupt_byte_is_caught(entries in entries(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (mut segment, written, _) = encoded(&entries);
            let at = HEADER_LEN + at.index(segment.len() - HEADER_LEN);
            segment[at] ^= 1 << bit;
            let reading = read(&segment).unwrap();
            prop_assert!(written.starts_with(&reading.entries));
            prop_assert!(reading.entries.len() < written.len() && reading.torn);
        }
    }

    /// A reused segment: a zero length after the newest entry ends the data; the old whole
    /// entries after it are not read, and are no torn tail.
    #[test]
    fn a_zero_length_ends_the_data_before_old_entries() {
        let old = [(1, vec![1], "old".to_owned(), vec![2], vec![3])];
        let new = [(2, vec![4], "new".to_owned(), vec![5], vec![6])];
        let (mut segment, written, _) = encoded(&new);
        segment.extend_from_slice(&[0; 4]);
        segment.extend_from_slice(&encoded(&old).0[HEADER_LEN..]);
        let reading = read(&segment).unwrap();
        assert_eq!((reading.entries, reading.torn), (written, false));
    }

    #[test]
    fn not_a_segment_and_other_versions_are_refused() {
        assert_eq!(read(b"short"), Err(Unreadable::NotASegment));
        assert_eq!(read(&[0; 32]), Err(Unreadable::NotASegment));
        let mut other = header();
        other[8] = 2;
        assert_eq!(read(&other), Err(Unreadable::Version(2)));
        assert_eq!(read(&header()).unwrap(), Reading::default());
    }
}
