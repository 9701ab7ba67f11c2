//! The spool directory is its user's alone, whatever else is on the host: created 0700, and an
//! existing one refused when another user owns it or others may write in it; every file made
//! in it is 0600 and opened without following symlinks; a file read from it must be a regular
//! file of this user's, no larger than the spool, else it is skipped (and counted by the
//! caller), never followed, never a hang (a FIFO), never read until memory runs out (a link
//! to `/dev/zero`).

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::Path;

use crate::Error;

pub(super) use crate::private_file::open;
use crate::private_file::open_with;

/// Makes `dir` (0700) if missing, and takes its `lock` file (0600, not truncated, not through a
/// symlink). Refuses a directory another user owns or others may write in, naming `spool_dir`.
/// Returns the lock and this process's user (the owner the lock was created with).
pub(super) fn claim(dir: &Path) -> Result<(File, u32), Error> {
    let refused = |what: String| Error::config("spool_dir", format!("`{}`: {what}", dir.display()));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| refused(format!("cannot create it: {e}")))?;
    let lock = open(
        OpenOptions::new().read(true).write(true).create(true),
        &dir.join("lock"),
    )
    .map_err(|e| {
        refused(format!(
            "cannot take its lock file (a link, or unwritable): {e}"
        ))
    })?;
    let lock_meta = lock
        .metadata()
        .map_err(|e| refused(format!("cannot read its lock file: {e}")))?;
    if !lock_meta.is_file() {
        return Err(refused("its `lock` is not a regular file".into()));
    }
    let user = lock_meta.uid();
    let dir_meta = std::fs::metadata(dir).map_err(|e| refused(format!("cannot read it: {e}")))?;
    if dir_meta.uid() != user {
        return Err(refused(format!(
            "owned by user {}, not by this process's user ({user}): give a directory of your own",
            dir_meta.uid()
        )));
    }
    if dir_meta.mode() & 0o022 != 0 {
        return Err(refused(format!(
            "writable by others (mode {:o}): records and credentials would be theirs to read \
             or forge; make it 0700",
            dir_meta.mode() & 0o777
        )));
    }
    Ok((lock, user))
}

/// The bytes of `path` if it is a regular file of `user`'s of at most `max` bytes; `None` if it
/// is anything else (a link, a FIFO, a device, a directory, another user's, too large) or
/// cannot be read.
pub(super) fn read(path: &Path, user: u32, max: u64) -> Option<Vec<u8>> {
    // Non-blocking: opening a FIFO must not wait for a writer.
    let file = open_with(OpenOptions::new().read(true), path, libc::O_NONBLOCK).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != user || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}
