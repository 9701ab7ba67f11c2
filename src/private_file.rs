//! Files the crate creates (the spool's, the stats file, the handover's owner claim) are its
//! user's alone: 0600, never opened through a symlink (a planted link must not make the crate
//! write or truncate its target), never inherited by a child.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The mode of a file the crate creates: read and written by its user only.
const FILE_MODE: u32 = 0o600;

/// Opens `path` for `options` (a new file 0600), never through a symlink.
pub(crate) fn open(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
    open_with(options, path, 0)
}

/// [`open`] with more `open(2)` flags (e.g. `O_NONBLOCK`, so a FIFO never hangs a reader).
pub(crate) fn open_with(
    options: &mut OpenOptions,
    path: &Path,
    flags: i32,
) -> std::io::Result<File> {
    options
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | flags)
        .open(path)
}
