//! Windows's power source: `PowerSettingRegisterNotification(GUID_ACDC_POWER_SOURCE)` with a
//! callback (no window needed). Windows calls it once at registration with the current value
//! and again on every change: 0 is AC, 1 is the battery (DC), 2 a short-term source such as
//! a UPS (counted as battery). The registration lives as long as the process.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use model_manager::PowerSource;
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, HANDLE};
use windows_sys::Win32::System::Power::{
    PowerSettingRegisterNotification, DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS, POWERBROADCAST_SETTING,
};
use windows_sys::Win32::System::SystemServices::GUID_ACDC_POWER_SOURCE;
use windows_sys::Win32::UI::WindowsAndMessaging::{DEVICE_NOTIFY_CALLBACK, PBT_POWERSETTINGCHANGE};

type Report = Box<dyn Fn(PowerSource) + Send>;

/// Registers for the AC/DC setting; `report` hears the current source at once and every
/// change after.
pub fn watch(report: impl Fn(PowerSource) + Send + 'static) -> std::io::Result<()> {
    let report: &'static Report = Box::leak(Box::new(Box::new(report) as Report));
    let params: &'static mut DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS =
        Box::leak(Box::new(DEVICE_NOTIFY_SUBSCRIBE_PARAMETERS {
            Callback: Some(on_setting_change),
            Context: std::ptr::from_ref(report).cast_mut().cast::<c_void>(),
        }));
    let mut registration: *mut c_void = std::ptr::null_mut();
    // SAFETY: with DEVICE_NOTIFY_CALLBACK the recipient is a pointer to the parameters,
    // which (like the closure they point to) live for the rest of the process.
    let status = unsafe {
        PowerSettingRegisterNotification(
            &GUID_ACDC_POWER_SOURCE,
            DEVICE_NOTIFY_CALLBACK,
            std::ptr::from_mut(params).cast::<c_void>() as HANDLE,
            &mut registration,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(std::io::Error::other(format!(
            "PowerSettingRegisterNotification failed (error {status})"
        )));
    }
    Ok(())
}

/// The power source a `GUID_ACDC_POWER_SOURCE` value names.
fn source_from(value: u32) -> PowerSource {
    if value == 0 {
        PowerSource::Mains
    } else {
        PowerSource::Battery
    }
}

/// The callback Windows calls on each change of the setting.
unsafe extern "system" fn on_setting_change(
    context: *const c_void,
    kind: u32,
    setting: *const c_void,
) -> u32 {
    if kind != PBT_POWERSETTINGCHANGE || setting.is_null() {
        return ERROR_SUCCESS;
    }
    // SAFETY: for PBT_POWERSETTINGCHANGE, `setting` is a POWERBROADCAST_SETTING whose
    // `Data` holds `DataLength` bytes (a DWORD for this setting).
    let value = unsafe {
        let setting = &*setting.cast::<POWERBROADCAST_SETTING>();
        if setting.DataLength < 4 {
            return ERROR_SUCCESS;
        }
        std::ptr::read_unaligned(setting.Data.as_ptr().cast::<u32>())
    };
    // SAFETY: `context` is the leaked closure registered in `watch`.
    let report = unsafe { &*context.cast::<Report>() };
    let _ = catch_unwind(AssertUnwindSafe(|| report(source_from(value))));
    ERROR_SUCCESS
}
