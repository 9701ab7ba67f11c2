//! The final counters, written for whoever started the program (`run_rust_step`'s receipt in a
//! ZenML step) once the pipeline has shut down: `handover::STATS_FILE`.

use std::io::Write as _;
use std::path::Path;

use super::ExportStats;

/// Writes `stats` to `path` as one JSON object, replacing the file whole: a reader never sees
/// half of it. The file is private (0600, its partial never written through a link). The error
/// says what could not be written.
pub(super) fn write(path: &Path, stats: &ExportStats) -> std::io::Result<()> {
    let json = serde_json::json!({
        "emitted": stats.emitted,
        "exported": stats.exported,
        "dropped": stats.dropped,
        "failed": stats.failed,
        "rejected": stats.rejected,
        "truncated": stats.truncated,
        "recovered": stats.recovered,
        "spooled": stats.spooled,
        // What the helper may count on this program understanding (`handover` module docs).
        "handover_version": crate::handover::VERSION,
    });
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    // A partial left by a killed process of the same pid goes first (a link is removed, never
    // followed).
    let _ = std::fs::remove_file(&partial);
    let mut file = crate::private_file::open(
        std::fs::OpenOptions::new().write(true).create_new(true),
        Path::new(&partial),
    )?;
    file.write_all(json.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_written_whole_and_replace_an_older_file() {
        let dir = std::env::temp_dir().join(format!("zenml-otel-receipt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        std::fs::write(&path, "old").unwrap();
        let stats = ExportStats {
            emitted: 5,
            exported: 3,
            dropped: 1,
            failed: 1,
            ..ExportStats::default()
        };
        write(&path, &stats).unwrap();
        let read: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            read,
            serde_json::json!({"emitted": 5, "exported": 3, "dropped": 1, "failed": 1,
                               "rejected": 0, "truncated": 0, "recovered": 0, "spooled": 0,
                               "handover_version": crate::handover::VERSION})
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no partial file left"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the counters are the user's alone");
        assert!(write(&dir.join("missing/stats.json"), &stats).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
