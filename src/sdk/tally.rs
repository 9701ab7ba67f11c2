//! How many records went through a [`ZenmlLogProcessor`](super::ZenmlLogProcessor) in this
//! process: what a [`ZenmlLogExporter`](super::ZenmlLogExporter)'s receipt counts as emitted,
//! since an SDK batch processor between them drops records the exporter never sees. One count
//! per process, as a ZenML step's program has one provider (and one receipt).

use std::sync::atomic::{AtomicU64, Ordering};

static EMITTED: AtomicU64 = AtomicU64::new(0);

pub(super) fn count_emitted() {
    EMITTED.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn emitted() -> &'static AtomicU64 {
    &EMITTED
}
