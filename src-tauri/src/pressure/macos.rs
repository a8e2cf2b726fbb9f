//! macOS's memory-pressure signal: a dispatch memory-pressure source (the one Activity
//! Monitor's "memory pressure" follows). The system calls the handler on a queue of its own
//! when the level changes to normal, warning or critical; nothing runs in between.

use std::ffi::c_void;
use std::sync::OnceLock;

use dispatch2::{
    dispatch_source_memorypressure_flags_t as Flags, dispatch_source_type_s, DispatchObject,
    DispatchQueue, DispatchRetained, DispatchSource,
};
use model_manager::PressureLevel;
use parking_lot::Mutex;

use super::Source;

type Report = Box<dyn Fn(PressureLevel) + Send>;

/// The source and whom it tells, alive for the rest of the process.
static WATCH: OnceLock<(DispatchRetained<DispatchSource>, Mutex<Report>)> = OnceLock::new();

/// Creates and starts the dispatch source (once per process).
pub fn watch(report: impl Fn(PressureLevel) + Send + 'static) -> std::io::Result<Source> {
    let mask = Flags::DISPATCH_MEMORYPRESSURE_NORMAL.0
        | Flags::DISPATCH_MEMORYPRESSURE_WARN.0
        | Flags::DISPATCH_MEMORYPRESSURE_CRITICAL.0;
    let queue = DispatchQueue::new("dormouse.memory-pressure", None);
    // SAFETY: the type is the system's memory-pressure source type, whose handle is unused
    // (0) and whose mask is the memory-pressure flags, as `dispatch_source_create` documents.
    let source = unsafe {
        let kind = (&raw const dispatch2::_dispatch_source_type_memorypressure)
            .cast::<dispatch_source_type_s>()
            .cast_mut();
        DispatchSource::new(kind, 0, mask as usize, Some(&queue))
    };
    source.set_event_handler_f(on_event);
    let report: Report = Box::new(report);
    if WATCH.set((source, Mutex::new(report))).is_err() {
        return Err(std::io::Error::other(
            "the memory-pressure source is already running",
        ));
    }
    if let Some((source, _)) = WATCH.get() {
        source.resume();
    }
    tracing::info!("watching the system's memory pressure (dispatch source)");
    Ok(Source::DispatchSource)
}

/// The source's event handler: reads which level the system reported.
extern "C" fn on_event(_context: *mut c_void) {
    let Some((source, report)) = WATCH.get() else {
        return;
    };
    let data = source.data() as std::ffi::c_ulong;
    let level = if data & Flags::DISPATCH_MEMORYPRESSURE_CRITICAL.0 != 0 {
        PressureLevel::Critical
    } else if data & Flags::DISPATCH_MEMORYPRESSURE_WARN.0 != 0 {
        PressureLevel::Warn
    } else {
        PressureLevel::Normal
    };
    (report.lock())(level);
}
