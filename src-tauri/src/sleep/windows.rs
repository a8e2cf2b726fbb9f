//! Windows's sleep signal: `PowerRegisterSuspendResumeNotification` with a callback (no
//! window needed). `PBT_APMSUSPEND` comes just before the sleep (Windows gives the callback
//! about two seconds), `PBT_APMRESUMEAUTOMATIC` after every wake. The registration lives as
//! long as the process.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::System::Power::{
    PowerRegisterSuspendResumeNotification, DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    DEVICE_NOTIFY_CALLBACK, PBT_APMRESUMEAUTOMATIC, PBT_APMSUSPEND,
};

use super::SleepHooks;

/// Registers for suspend and resume; the hooks and the registration are kept for the
/// process's life.
pub fn watch(hooks: SleepHooks) -> Result<(), String> {
    let hooks: &'static SleepHooks = Box::leak(Box::new(hooks));
    let params: &'static mut DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS =
        Box::leak(Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
            Callback: Some(on_power_event),
            Context: std::ptr::from_ref(hooks).cast_mut().cast::<c_void>(),
        }));
    let mut registration: *mut c_void = std::ptr::null_mut();
    // SAFETY: with DEVICE_NOTIFY_CALLBACK the recipient is a pointer to the parameters,
    // which (like the hooks they point to) live for the rest of the process.
    let status = unsafe {
        PowerRegisterSuspendResumeNotification(
            DEVICE_NOTIFY_CALLBACK,
            std::ptr::from_mut(params).cast::<c_void>() as HANDLE,
            &mut registration,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(format!(
            "PowerRegisterSuspendResumeNotification failed (error {status})"
        ));
    }
    Ok(())
}

/// The callback Windows calls on each power event.
unsafe extern "system" fn on_power_event(
    context: *const c_void,
    kind: u32,
    _setting: *const c_void,
) -> u32 {
    // SAFETY: `context` is the leaked `SleepHooks` registered in `watch`.
    let hooks = unsafe { &*context.cast::<SleepHooks>() };
    // A panic must not cross into Windows.
    let _ = catch_unwind(AssertUnwindSafe(|| match kind {
        PBT_APMSUSPEND => (hooks.before_sleep)(),
        PBT_APMRESUMEAUTOMATIC => (hooks.after_wake)(),
        _ => {}
    }));
    ERROR_SUCCESS
}
