//! A segment file mapped into memory: the one place this crate uses `unsafe` (the mapping and
//! two system calls).
//!
//! Why a mapping: a record is in the spool once it is copied into the file's pages — a
//! `memcpy` on the logging thread instead of a `write(2)` per event — and the kernel's page
//! cache keeps those pages when the process is killed (SIGKILL, the OOM killer, `abort`).
//!
//! Why it is sound: mapping a file is `unsafe` because the memory changes if anyone else
//! writes or truncates the file while it is mapped (truncation turns a later access into
//! SIGBUS). The file is created here (`create_new`, 0600), in a spool directory whose lock this
//! process holds, and its blocks are allocated before it is mapped (`posix_fallocate`, or
//! zeros written out), so a full disk fails here, as an error, not as SIGBUS on a later page
//! fault. Nothing else writes or truncates a live segment's file: the spool only reads it back
//! (records sent again) and syncs it, and a reader of a dead process's spool reads files,
//! never maps them.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};

/// A file of ours, its blocks allocated, mapped for writing.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: MmapMut,
    path: PathBuf,
}

impl MappedFile {
    /// Creates `path` (which must not exist) holding `first`, then zeros up to `len` bytes.
    pub(crate) fn create(path: &Path, first: &[u8], len: usize) -> std::io::Result<Self> {
        let mut file = super::private::open(
            OpenOptions::new().read(true).write(true).create_new(true),
            path,
        )?;
        allocate(&mut file, first, len)?;
        // SAFETY: see the module's doc: the file is ours alone and fully allocated.
        let map = unsafe { MmapOptions::new().map_mut(&file)? };
        let mapped = Self {
            map,
            path: path.to_owned(),
        };
        mapped.make_writable();
        Ok(mapped)
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The same file under another name (in the same directory).
    pub(crate) fn rename(mut self, to: &Path) -> std::io::Result<Self> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_owned();
        Ok(self)
    }

    /// Empties the file (a zero length where its first entry was: the data ends there) and
    /// renames it `to`, ready to be written again with no page fault on the way.
    pub(crate) fn recycle(mut self, to: &Path, first_entry: usize) -> std::io::Result<Self> {
        if let Some(length) = self.map.get_mut(first_entry..first_entry + 4) {
            length.fill(0);
        }
        self.make_writable();
        self.rename(to)
    }

    /// Faults every page in for writing now, in one call, rather than one fault per 4 KiB page
    /// on the logging thread (a file's shared page is write-protected until written, and again
    /// after the kernel wrote it back). Where that call is missing (Linux before 5.14, other
    /// systems) pages fault in as they are written: slower, the same bytes.
    fn make_writable(&self) {
        #[cfg(target_os = "linux")]
        {
            const MADV_POPULATE_WRITE: libc::c_int = 23;
            // SAFETY: advice on this mapping's own range, which stays mapped throughout; the
            // call only faults pages in (it changes no byte) and reports failure by its result.
            let _ = unsafe {
                libc::madvise(
                    self.map.as_ptr() as *mut libc::c_void,
                    self.map.len(),
                    MADV_POPULATE_WRITE,
                )
            };
        }
    }
}

/// Writes `first`, then makes the file `len` bytes with every block allocated (zeros), so no
/// later write into the mapping can meet a full disk.
fn allocate(file: &mut File, first: &[u8], len: usize) -> std::io::Result<()> {
    file.write_all(first)?;
    reserve(file, len)
}

/// Linux: `posix_fallocate` allocates the blocks without writing them (a 4 MiB segment costs
/// microseconds, not a 4 MiB write on the logging thread).
#[cfg(target_os = "linux")]
fn reserve(file: &mut File, len: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let len = libc::off_t::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: a plain system call on the descriptor `file` owns, open for writing throughout.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        error => Err(std::io::Error::from_raw_os_error(error)),
    }
}

/// Elsewhere: zeros written out.
#[cfg(not(target_os = "linux"))]
fn reserve(file: &mut File, len: usize) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let written = file.metadata()?.len() as usize;
    let mut left = len.saturating_sub(written);
    while left > 0 {
        let n = left.min(ZEROS.len());
        file.write_all(&ZEROS[..n])?;
        left -= n;
    }
    file.flush()
}
