//! macOS's power source: IOKit's power-source notification (`IOPSNotificationCreateRunLoopSource`)
//! scheduled on the main run loop, which fires when any power source changes; the callback
//! reads which one provides power (`IOPSGetProvidingPowerSourceType`: "AC Power", "Battery
//! Power" or "UPS Power", the last two counted as battery) and reports it when it changed.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use model_manager::PowerSource;
use objc2_core_foundation::{kCFRunLoopDefaultMode, CFRunLoop};
use objc2_io_kit::{
    IOPSCopyPowerSourcesInfo, IOPSGetProvidingPowerSourceType, IOPSNotificationCreateRunLoopSource,
};
use parking_lot::Mutex;

/// The report and the last source it heard, for the callback.
struct Watch {
    report: Box<dyn Fn(PowerSource) + Send>,
    last: Mutex<Option<PowerSource>>,
}

/// The source providing power now.
fn providing_source() -> PowerSource {
    let info = IOPSCopyPowerSourcesInfo();
    // SAFETY: `info` is the snapshot IOKit just returned (or none).
    let kind = unsafe { IOPSGetProvidingPowerSourceType(info.as_deref()) };
    match kind.map(|k| k.to_string()) {
        Some(kind) if kind != "AC Power" => PowerSource::Battery,
        _ => PowerSource::Mains,
    }
}

impl Watch {
    fn check(&self) {
        let now = providing_source();
        let mut last = self.last.lock();
        if *last != Some(now) {
            *last = Some(now);
            (self.report)(now);
        }
    }
}

/// Reports the source now and on every change after.
pub fn watch(report: impl Fn(PowerSource) + Send + 'static) -> std::io::Result<()> {
    let watch: &'static Watch = Box::leak(Box::new(Watch {
        report: Box::new(report),
        last: Mutex::new(None),
    }));
    watch.check();
    // SAFETY: the context is the leaked `Watch`, valid for the process's life.
    let source = unsafe {
        IOPSNotificationCreateRunLoopSource(
            Some(on_change),
            std::ptr::from_ref(watch).cast_mut().cast::<c_void>(),
        )
    }
    .ok_or_else(|| std::io::Error::other("IOPSNotificationCreateRunLoopSource failed"))?;
    let main = CFRunLoop::main().ok_or_else(|| std::io::Error::other("no main run loop"))?;
    // SAFETY: reading CoreFoundation's constant run-loop mode.
    main.add_source(Some(&source), unsafe { kCFRunLoopDefaultMode });
    // The run loop retains the source; it stays scheduled for the process's life.
    Ok(())
}

/// IOKit's callback: a power source changed.
unsafe extern "C-unwind" fn on_change(context: *mut c_void) {
    // SAFETY: `context` is the leaked `Watch` registered in `watch`.
    let watch = unsafe { &*context.cast::<Watch>() };
    let _ = catch_unwind(AssertUnwindSafe(|| watch.check()));
}
